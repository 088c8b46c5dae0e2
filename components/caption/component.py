"""Caption every record of a store (knowledge base + LLM, cached), for the contrastive and caption losses."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Output

from components import COMPONENT_OPTIONS


@dsl.component(**COMPONENT_OPTIONS)
def caption(work_root: str, store: Input[Dataset], kb: Input[Artifact], captions: Output[Dataset],
            part: str = "main", llm: str = "offline", llm_model: str = "", llm_base_url: str = ""):
    """Write WORK_ROOT/captions.parquet (PART=main: the run's store) or WORK_ROOT/real_captions.parquet (PART=real:
    the real-ECG benchmark store); a store without a path (real_benchmark=False) is skipped. The API key of an
    openai-compatible LLM comes from OPENAI_API_KEY."""
    from dataclasses import asdict

    from esi.pipeline.kfp_steps import captions_out, init_step, write_json

    p = init_step(work_root, llm=llm, llm_model=llm_model, llm_base_url=llm_base_url)
    out = captions_out(work_root, part)
    if not store.metadata.get("path"):
        meta = {"path": "", "part": part, "skipped": store.metadata.get("skipped") or "the store has no path"}
        captions.metadata.update(meta)
        write_json(captions.path, meta)
        return
    from esi.cqa.captions import caption_store

    s = caption_store(store.metadata["path"], out, kb_dir=kb.metadata["path"], cache_path=p["caption_cache"],
                      progress=False)
    info = {k: v for k, v in asdict(s).items() if isinstance(v, (int, float, str, bool))}
    captions.metadata.update({"path": str(out), "part": part, **info})
    write_json(captions.path, {"path": str(out), "part": part, **info})
