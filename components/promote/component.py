"""Promote a registered version to an alias (champion) when it passes the gates given as parameters."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Artifact, Output

from components import COMPONENT_OPTIONS


@dsl.component(**COMPONENT_OPTIONS)
def promote(work_root: str, version: int, decision: Output[Artifact], model_name: str = "esi",
            gates: str = "", to: str = "champion", mlflow_tracking_uri: str = ""
            ) -> NamedTuple("Promotion", [("passed", bool), ("model_uri", str)]):
    """GATES: comma list of METRIC>=VALUE ('' = the settings' gates). A refusal is not a failure of the run:
    ``model_uri`` is then the champion if there is one, else this version (as ``esi run`` does), so the bento and
    the scores still come from a model, and the failing version can be inspected."""
    from collections import namedtuple
    from dataclasses import asdict

    from esi.pipeline.kfp_steps import init_step, parse_gates, write_json
    from esi.pipeline.local import _served_uri
    from esi.registry import promote as promote_version

    init_step(work_root, mlflow_tracking_uri=mlflow_tracking_uri)
    pr = promote_version(model_name, version=int(version), to=to, require=parse_gates(gates),
                         tracking_uri=mlflow_tracking_uri or None)
    uri = f"models:/{model_name}@{to}" if pr.passed else _served_uri(model_name, {"version": int(version)})
    decision.metadata.update({"passed": bool(pr.passed), "version": int(pr.version), "alias": to,
                              "model_uri": uri, "failing": [g["metric"] for g in pr.gates if not g["passed"]]})
    write_json(decision.path, asdict(pr))
    return namedtuple("Promotion", "passed model_uri")(bool(pr.passed), uri)
