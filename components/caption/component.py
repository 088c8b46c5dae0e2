"""Caption every record of the store (knowledge base + LLM, cached), for the contrastive and caption losses."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Output

from components import COMPONENT_OPTIONS


@dsl.component(**COMPONENT_OPTIONS)
def caption(work_root: str, store: Input[Dataset], kb: Input[Artifact], captions: Output[Dataset],
            llm: str = "offline", llm_model: str = "", llm_base_url: str = ""):
    """Write WORK_ROOT/captions.parquet; the API key of an openai-compatible LLM comes from OPENAI_API_KEY."""
    from dataclasses import asdict

    from esi.cqa.captions import caption_store
    from esi.pipeline.kfp_steps import init_step, write_json

    p = init_step(work_root, llm=llm, llm_model=llm_model, llm_base_url=llm_base_url)
    s = caption_store(store.metadata["path"], p["caption"], kb_dir=kb.metadata["path"],
                      cache_path=p["caption_cache"], progress=False)
    info = {k: v for k, v in asdict(s).items() if isinstance(v, (int, float, str, bool))}
    captions.metadata.update({"path": str(p["caption"]), **info})
    write_json(captions.path, {"path": str(p["caption"]), **info})
