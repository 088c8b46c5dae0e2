"""prepare (plan, shards, merge) and validate run as their component functions on a tiny synthetic set.

Catches: a shard task that converts the wrong records or redoes finished shards, a merge that does not finalise,
a validation report that is not published, and a gate that lets a failed validation through.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from kfp.dsl import HTML, Artifact, Dataset

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from components.prepare.component import prepare_merge, prepare_plan, prepare_shard  # noqa: E402
from components.validate.component import validate, validation_gate  # noqa: E402


def art(cls, path: Path, metadata: dict | None = None):
    a = cls(uri=str(path), metadata=dict(metadata or {}))
    return a


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Dataset]:
    root = tmp_path_factory.mktemp("work")
    shards = prepare_plan.python_func(work_root=str(root), shard_size=3, subjects=4, records_per_subject=2)
    assert shards == ["0/3", "1/3", "2/3"]
    counts = [prepare_shard.python_func(work_root=str(root), shard=s, shard_size=3) for s in shards]
    assert sum(counts) >= 8  # the last shard task sees the store complete and reports its total
    again = prepare_shard.python_func(work_root=str(root), shard="1/3", shard_size=3)
    assert again == counts[-1]  # done shards are skipped, the store is unchanged
    out = art(Dataset, root / "art" / "store")
    prepare_merge.python_func(work_root=str(root), shard_records=counts, store=out, shard_size=3)
    return root, out


def test_merge_describes_a_complete_store(store: tuple[Path, Dataset]) -> None:
    root, out = store
    assert out.metadata["path"] == str(root / "store") and out.metadata["records"] == 8
    assert out.metadata["shards"] == 3 and out.metadata["rejected"] == 0
    assert json.loads((root / "store" / "header.json").read_text())["complete"] is True
    assert json.loads(Path(out.path).read_text())["path"] == str(root / "store")


def test_validate_publishes_the_report_and_gates(store: tuple[Path, Dataset], tmp_path: Path) -> None:
    root, out = store
    report, summary = art(HTML, tmp_path / "report"), art(Artifact, tmp_path / "summary")
    passed, proceed = validate.python_func(work_root=str(root), store=out, report=report, summary=summary)
    assert passed is True and proceed is True
    assert Path(report.path).read_text().lstrip().lower().startswith("<!doctype html")
    assert report.metadata["records"] == 8 and report.metadata["report"].endswith("report.html")

    header = json.loads((root / "store" / "header.json").read_text())
    header["fs"] = 250  # the store now lies about its sampling rate: a critical expectation fails
    (root / "store" / "header.json").write_text(json.dumps(header))
    passed, proceed = validate.python_func(work_root=str(root), store=out, report=report, summary=summary)
    assert (passed, proceed) == (False, False) and report.metadata["critical_failures"] >= 1
    passed, proceed = validate.python_func(work_root=str(root), store=out, report=report, summary=summary,
                                           gate=False)
    assert (passed, proceed) == (False, True)

    from esi.errors import ValidationFailed

    with pytest.raises(ValidationFailed, match="report.html"):
        validation_gate.python_func(report=report)
