"""batch_scoring: score a folder of records with a registered model alias, fanned out over shards.

Scheduled with ``esi pipeline schedule --cron "0 0 2 * * *"`` (KFP recurring run; each run writes its own folder).
"""

from kfp import dsl

from components.score.component import score_merge, score_plan, score_shard
from pipelines.cluster import on_cluster


@dsl.pipeline(name="esi-batch-scoring", description="Batch scoring of new ECG records with models:/esi@champion")
def batch_scoring(
    work_root: str = "/data/esi",
    records: str = "/data/incoming",
    source: str = "wfdb",
    model: str = "models:/esi@champion",
    labels: str = "default",
    shards: int = 4,
    out: str = "/data/esi/batch-scores",
    mlflow_tracking_uri: str = "",
):
    plan = score_plan(shards=shards)
    with dsl.ParallelFor(plan.output) as s:
        scored = on_cluster(score_shard(work_root=work_root, shard=s, n_shards=shards, records=records, source=source,
                                        model_uri=model, labels=labels, out=out, run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
                                        mlflow_tracking_uri=mlflow_tracking_uri), cpu="2", memory="8Gi", gpu=1)
    on_cluster(score_merge(work_root=work_root, shard_outputs=dsl.Collected(scored.outputs["Output"]), out=out,
                           run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER))
