"""Validate the store (Great Expectations): an HTML report artifact, and the gate the pipeline stops at."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Output

from components import COMPONENT_OPTIONS


@dsl.component(**COMPONENT_OPTIONS)
def validate(work_root: str, store: Input[Dataset], report: Output[HTML], summary: Output[Artifact],
             gate: bool = True) -> NamedTuple("Validation", [("passed", bool), ("proceed", bool)]):
    """Run the expectation suites; ``proceed`` is False when a critical expectation fails and GATE is on."""
    from collections import namedtuple

    from esi.pipeline.kfp_steps import copy_file, init_step
    from esi.validation import validate_store

    p = init_step(work_root)
    r = validate_store(store.metadata["path"], p["validate"], progress=False)
    copy_file(p["validate"] / "report.html", report.path)
    copy_file(p["validate"] / "summary.json", summary.path)
    meta = {"passed": r.passed, "records": r.n_records, "quarantined": r.n_quarantined,
            "critical_failures": len(r.critical_failures), "warnings": len(r.warnings),
            "report": str(p["validate"] / "report.html")}
    report.metadata.update(meta)
    summary.metadata.update(meta)
    return namedtuple("Validation", "passed proceed")(r.passed, bool(r.passed or not gate))


@dsl.component(**COMPONENT_OPTIONS)
def validation_gate(report: Input[HTML]):
    """The gate: reached only when validation failed with the gate on; fails the run with the report's place."""
    from esi.errors import ValidationFailed

    raise ValidationFailed(f"validation failed ({report.metadata.get('critical_failures')} critical "
                           f"expectation(s)): see {report.metadata.get('report')} (artifact {report.uri}); fix "
                           "the data, or run with validation_gate=False to continue anyway")
