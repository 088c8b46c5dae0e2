"""Prepare data: plan the shards, convert each shard in parallel (dsl.ParallelFor), then merge into one store;
and the real-ECG benchmark store (prepare_real)."""

from kfp import dsl
from kfp.dsl import Dataset, Output

from components import COMPONENT_OPTIONS


@dsl.component(**COMPONENT_OPTIONS)
def prepare_plan(work_root: str, source: str = "synthetic", source_root: str = "", shard_size: int = 200,
                 subjects: int = 120, records_per_subject: int = 5, seed: int = 0) -> list:
    """Generate the synthetic set (source=synthetic) or read SOURCE_ROOT; returns the shards as "i/n"."""
    from esi.pipeline.kfp_steps import init_step, plan_prepare

    init_step(work_root)
    plan = plan_prepare(source, source_root, work_root, shard_size=shard_size, subjects=subjects,
                        records_per_subject=records_per_subject, seed=seed, progress=False)
    return plan["shards"]


@dsl.component(**COMPONENT_OPTIONS)
def prepare_shard(work_root: str, shard: str, source: str = "synthetic", source_root: str = "",
                  shard_size: int = 200) -> int:
    """Convert shard "i/n" into the store (skipped when already done: re-runs resume)."""
    from esi.data.prepare import prepare
    from esi.pipeline.kfp_steps import init_step, parse_shard, source_root_of

    p = init_step(work_root)
    reader, root = source_root_of(source, source_root, work_root)
    s = prepare(reader, root, p["prepare"], shard_size=shard_size, shard=parse_shard(shard), progress=False)
    return s.windows_written if s.complete else s.records_seen


@dsl.component(**COMPONENT_OPTIONS)
def prepare_merge(work_root: str, shard_records: list, store: Output[Dataset], source: str = "synthetic",
                  source_root: str = "", shard_size: int = 200):
    """Finalise the store once every shard is done (manifest, rejects, header) and describe it."""
    from esi.data.prepare import prepare
    from esi.data.summary import summarize_store
    from esi.pipeline.kfp_steps import init_step, source_root_of, write_json

    p = init_step(work_root)
    reader, root = source_root_of(source, source_root, work_root)
    s = prepare(reader, root, p["prepare"], shard_size=shard_size, progress=False)
    summary = summarize_store(p["prepare"])
    store.metadata.update({"path": str(p["prepare"]), "records": s.windows_written, "rejected": s.rejected,
                           "shards": s.shards_total, "shard_tasks": len(shard_records)})
    write_json(store.path, {"path": str(p["prepare"]), "summary": summary})


@dsl.component(**COMPONENT_OPTIONS)
def prepare_real(work_root: str, store: Output[Dataset], enabled: bool = True):
    """The real-ECG benchmark records shipped with ESI (tests/fixtures/real_benchmark, source wfdb) as the store
    WORK_ROOT/real_store: captioned for pretraining (its pretraining part) and scored by evaluate_real (its
    evaluation part). ENABLED=False writes a store artifact without a path: the real steps after it skip."""
    from esi.pipeline.kfp_steps import init_step, prepare_real_store, write_json

    init_step(work_root)
    meta = prepare_real_store(work_root, enabled=enabled)
    store.metadata.update(meta)
    write_json(store.path, meta)
