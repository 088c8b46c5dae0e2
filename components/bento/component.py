"""Build the BentoML bento of a registered model (offline; the image is made from it by bentoml containerize)."""

from kfp import dsl
from kfp.dsl import Artifact, Output

from components import COMPONENT_OPTIONS


@dsl.component(**COMPONENT_OPTIONS)
def build_bento(work_root: str, model_uri: str, bento: Output[Artifact], mlflow_tracking_uri: str = "") -> str:
    """esi.serving.build.build_bento; returns the bento tag (e.g. esi:3)."""
    from esi.pipeline.kfp_steps import init_step
    from esi.serving.build import build_bento as build

    init_step(work_root, mlflow_tracking_uri=mlflow_tracking_uri)
    tag = build(model_uri, tracking_uri=mlflow_tracking_uri or None)
    bento.metadata.update({"tag": tag, "model_uri": model_uri, "serve": f"bentoml serve {tag.split(':')[0]}:latest"})
    with open(bento.path, "w") as fh:
        fh.write(tag + "\n")
    return tag
