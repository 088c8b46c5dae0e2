"""Build (or update, incrementally) the Chroma knowledge base the captioner retrieves from."""

from kfp import dsl
from kfp.dsl import Artifact, Output

from components import COMPONENT_OPTIONS


@dsl.component(**COMPONENT_OPTIONS)
def build_kb(work_root: str, kb: Output[Artifact], embeddings: str = "", embedding_model: str = "",
             embedding_base_url: str = "", corpus: str = ""):
    """Embed the condition corpus (CORPUS: another folder of .md/.txt/.pdf; '' = the one shipped with ESI); only
    new or changed chunks are embedded on a re-run."""
    from dataclasses import asdict

    from esi.cqa.knowledge_base import build_knowledge_base
    from esi.pipeline.kfp_steps import init_step, write_json

    p = init_step(work_root, embeddings=embeddings, embedding_model=embedding_model,
                  llm_base_url=embedding_base_url)
    s = build_knowledge_base(kb_dir=p["kb"], corpus_dir=corpus or None, progress=False)
    info = {k: v for k, v in asdict(s).items() if isinstance(v, (int, float, str, bool))}
    kb.metadata.update({"path": str(p["kb"]), **info})
    write_json(kb.path, {"path": str(p["kb"]), **info})
