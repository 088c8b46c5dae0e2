"""Register the pretraining run (weights, evaluation, model card) as a new version in the MLflow registry."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Artifact, Input, Model, Output

from components import COMPONENT_OPTIONS


@dsl.component(**COMPONENT_OPTIONS)
def register(work_root: str, model: Input[Model], evaluation: Input[Artifact], registered: Output[Model],
             model_name: str = "esi", mlflow_tracking_uri: str = ""
             ) -> NamedTuple("Registered", [("version", int), ("model_uri", str)]):
    """esi.registry.register_run on the run directory and the evaluation folder."""
    from collections import namedtuple

    from esi.pipeline.kfp_steps import init_step
    from esi.registry import register_run

    init_step(work_root, mlflow_tracking_uri=mlflow_tracking_uri)
    reg = register_run(model.metadata["run_dir"], evaluations=[evaluation.metadata["path"]], name=model_name,
                       tracking_uri=mlflow_tracking_uri or None)
    registered.metadata.update({"name": reg.name, "version": int(reg.version), "model_uri": reg.model_uri,
                                "digest": reg.digest, "created": bool(reg.created), "card": str(reg.card_path)})
    with open(registered.path, "w") as fh:
        fh.write(reg.model_uri + "\n")
    return namedtuple("Registered", "version model_uri")(int(reg.version), reg.model_uri)
