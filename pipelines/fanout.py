"""Sub-pipelines that fan out over shards, used by esi_full where the loop needs an upstream step's output.

Inside a nested pipeline the upstream value (the promoted model URI) is a pipeline input of the loop's DAG, which
both the KFP backend and kfp.local resolve (kfp 2.17's local runner substitutes the loop item for any *task*
output wired straight into a ParallelFor body).
"""

from kfp import dsl

from components.score.component import score_merge, score_plan, score_shard
from pipelines.cluster import on_cluster


@dsl.pipeline(name="esi-score-fanout", description="Score RECORDS with MODEL_URI over SHARDS parallel tasks")
def score_fanout(work_root: str, model_uri: str, records: str = "", source: str = "wfdb", shards: int = 2,
                 mlflow_tracking_uri: str = ""):
    plan = score_plan(shards=shards)
    with dsl.ParallelFor(plan.output) as s:
        scored = on_cluster(score_shard(work_root=work_root, shard=s, n_shards=shards, records=records, source=source,
                                        model_uri=model_uri, mlflow_tracking_uri=mlflow_tracking_uri),
                            cpu="2", memory="8Gi", gpu=1)
    on_cluster(score_merge(work_root=work_root, shard_outputs=dsl.Collected(scored.outputs["Output"])))
