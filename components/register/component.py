"""Register the pretraining run (weights, evaluations, model card) as a new version in the MLflow registry."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Artifact, Input, Model, Output

from components import COMPONENT_OPTIONS


@dsl.component(**COMPONENT_OPTIONS)
def register(work_root: str, model: Input[Model], evaluation: Input[Artifact], registered: Output[Model],
             evaluation_real: Input[Artifact] = None, model_name: str = "esi", mlflow_tracking_uri: str = ""
             ) -> NamedTuple("Registered", [("version", int), ("model_uri", str)]):
    """esi.registry.register_run on the run directory and its evaluation folders: the synthetic one and, when
    the real benchmark ran, the real-ECG one (its metrics become real.conditions.<mode>.<metric>)."""
    from collections import namedtuple

    from esi.pipeline.kfp_steps import evaluation_folders, init_step
    from esi.registry import register_run

    init_step(work_root, mlflow_tracking_uri=mlflow_tracking_uri)
    folders = evaluation_folders(evaluation.metadata,
                                 evaluation_real.metadata if evaluation_real is not None else None)
    reg = register_run(model.metadata["run_dir"], evaluations=folders, name=model_name,
                       tracking_uri=mlflow_tracking_uri or None)
    registered.metadata.update({"name": reg.name, "version": int(reg.version), "model_uri": reg.model_uri,
                                "digest": reg.digest, "created": bool(reg.created), "card": str(reg.card_path),
                                "evaluations": folders})
    with open(registered.path, "w") as fh:
        fh.write(reg.model_uri + "\n")
    return namedtuple("Registered", "version model_uri")(int(reg.version), reg.model_uri)
