"""Batch scoring: plan the shards, score each in parallel (dsl.ParallelFor), then sum the shard summaries."""

from kfp import dsl
from kfp.dsl import Dataset, Output

from components import COMPONENT_OPTIONS


@dsl.component(**COMPONENT_OPTIONS)
def score_plan(shards: int = 2) -> list:
    """Shard indices 1..SHARDS."""
    from esi.pipeline.kfp_steps import score_shards

    return score_shards(shards)


@dsl.component(**COMPONENT_OPTIONS)
def score_shard(work_root: str, shard: int, n_shards: int, scores: Output[Dataset], records: str = "",
                source: str = "wfdb", model_uri: str = "models:/esi@champion", labels: str = "default",
                out: str = "", run_id: str = "", mlflow_tracking_uri: str = "") -> str:
    """Score shard SHARD of N_SHARDS of RECORDS ('' = the real sample records shipped with ESI); returns the
    shard's output folder (bad records are quarantined there, not fatal)."""
    from esi.pipeline.kfp_steps import init_step, score_input, shard_out, write_json
    from esi.serving.score import score

    p = init_step(work_root, mlflow_tracking_uri=mlflow_tracking_uri)
    folder = shard_out(out or p["score"], int(shard), int(n_shards), run_id)
    s = score(score_input(records), folder, model=model_uri, source=source or None, shard=(int(shard), int(n_shards)),
              labels=labels, progress=False)
    summary = {k: v for k, v in vars(s).items() if isinstance(v, (int, float, str, bool))}
    scores.metadata.update({"path": str(folder), "shard": int(shard), "n_shards": int(n_shards), **summary})
    write_json(scores.path, {"path": str(folder), **summary})
    return str(folder)


@dsl.component(**COMPONENT_OPTIONS)
def score_merge(work_root: str, shard_outputs: list, summary: Output[Dataset], out: str = "", run_id: str = ""):
    """Sum the shard summaries into OUT/summary-all.json (the shards keep their own outputs)."""
    from pathlib import Path

    from esi.pipeline.kfp_steps import init_step, merge_scores, write_json

    p = init_step(work_root)
    total = merge_scores(shard_outputs, Path(out or p["score"]) / run_id)
    summary.metadata.update({k: v for k, v in total.items() if isinstance(v, (int, float, str, bool))})
    write_json(summary.path, total)
