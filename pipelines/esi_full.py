"""esi_full: synthetic or real ECGs -> store -> validation gate -> knowledge base -> captions -> pretraining ->
evaluation -> registry -> promotion -> bento -> batch scores. Compile: ``esi pipeline compile``.

With real_benchmark (default on, as in ``esi run``) the shipped real-ECG benchmark records are prepared and
captioned too, their pretraining part is mixed into pretraining (mix_real), and their evaluation part is scored
(evaluate_real); register attaches both evaluations, so the registry and the model card carry real.conditions.*.
Off, the real steps still run but skip (one graph; KFP cannot wire a conditional task's artifact onward).

The defaults are the embedded run of ``make run`` (about ten minutes on two CPU cores under kfp.local); on a
cluster pass work_root on the PVC (the default), launcher=pytorchjob or trainjob, and a bigger model.
"""

from kfp import dsl

from components.bento.component import build_bento
from components.caption.component import caption
from components.evaluate.component import evaluate, evaluate_real
from components.kb.component import build_kb
from components.prepare.component import prepare_merge, prepare_plan, prepare_real, prepare_shard
from components.pretrain.component import pretrain
from components.promote.component import promote
from components.register.component import register
from components.validate.component import validate
from components.validate.component import validation_gate as stop_at_gate
from pipelines.cluster import on_cluster
from pipelines.fanout import score_fanout


@dsl.pipeline(name="esi-full", description="ESI end to end: data, validation, captions, pretraining, evaluation, "
                                           "registry, promotion, serving bento and batch scores")
def esi_full(
    work_root: str = "/data/esi",
    source: str = "synthetic",
    source_root: str = "",
    subjects: int = 120,
    records_per_subject: int = 5,
    shard_size: int = 200,
    seed: int = 0,
    validation_gate: bool = True,
    real_benchmark: bool = True,
    mix_real: bool = False,
    real_n_bootstrap: int = 1000,
    embeddings: str = "local",
    embedding_model: str = "",
    embedding_base_url: str = "",
    kb_corpus: str = "",
    llm: str = "offline",
    llm_model: str = "",
    llm_base_url: str = "",
    model_config: str = "esi_cpu",
    epochs: int = 3,
    batch_size: int = 16,
    lr: float = 5e-4,
    freeze_ecg_stages: int = 3,
    launcher: str = "in-process",
    nproc_per_node: int = 4,
    nodes: int = 1,
    job_namespace: str = "esi",
    training_image: str = "",
    job_timeout_s: int = 86400,
    job_cleanup: str = "on-success",
    task: str = "superdiagnostic",
    eval_modes: str = "zero-shot,linear-probe,identification",
    serve: bool = True,
    model_name: str = "esi",
    promotion_gates: str = "",
    mlflow_tracking_uri: str = "",
    score_input: str = "",
    score_source: str = "wfdb",
    score_shards: int = 2,
):
    plan = on_cluster(prepare_plan(work_root=work_root, source=source, source_root=source_root,
                                   shard_size=shard_size, subjects=subjects, records_per_subject=records_per_subject,
                                   seed=seed))
    with dsl.ParallelFor(plan.output) as shard:
        one = on_cluster(prepare_shard(work_root=work_root, shard=shard, source=source, source_root=source_root,
                                       shard_size=shard_size), cpu="4", memory="8Gi")
    store = on_cluster(prepare_merge(work_root=work_root, shard_records=dsl.Collected(one.output), source=source,
                                     source_root=source_root, shard_size=shard_size))
    real = on_cluster(prepare_real(work_root=work_root, enabled=real_benchmark), cpu="2", memory="8Gi")
    checked = on_cluster(validate(work_root=work_root, store=store.outputs["store"], gate=validation_gate),
                         cpu="2", memory="8Gi")
    with dsl.If(checked.outputs["proceed"] == True, name="validation-passed"):  # noqa: E712 (a KFP condition)
        kb = on_cluster(build_kb(work_root=work_root, embeddings=embeddings, embedding_model=embedding_model,
                                 embedding_base_url=embedding_base_url, corpus=kb_corpus), secret=True)
        captions = on_cluster(caption(work_root=work_root, store=store.outputs["store"], kb=kb.outputs["kb"],
                                      llm=llm, llm_model=llm_model, llm_base_url=llm_base_url), secret=True)
        real_captions = on_cluster(caption(work_root=work_root, store=real.outputs["store"], kb=kb.outputs["kb"],
                                           part="real", llm=llm, llm_model=llm_model, llm_base_url=llm_base_url),
                                   secret=True)
        # After the run's own captions: both write the one caption cache (SQLite on the shared volume).
        real_captions.set_display_name("caption-real").after(captions)
        # The pretrain step itself needs no GPU on a cluster: it launches the PyTorchJob/TrainJob and waits.
        trained = on_cluster(pretrain(work_root=work_root, store=store.outputs["store"],
                                      captions=captions.outputs["captions"], real_store=real.outputs["store"],
                                      real_captions=real_captions.outputs["captions"], mix_real=mix_real,
                                      model_config=model_config, epochs=epochs,
                                      batch_size=batch_size, lr=lr, seed=seed,
                                      freeze_ecg_stages=freeze_ecg_stages, launcher=launcher,
                                      nproc_per_node=nproc_per_node, nodes=nodes, namespace=job_namespace,
                                      image=training_image, timeout_s=job_timeout_s, cleanup=job_cleanup,
                                      mlflow_tracking_uri=mlflow_tracking_uri), cpu="2", memory="8Gi")
        evaluated = on_cluster(evaluate(work_root=work_root, model=trained.outputs["model"],
                                        store=store.outputs["store"], kb=kb.outputs["kb"], task=task,
                                        modes=eval_modes, seed=seed, mlflow_tracking_uri=mlflow_tracking_uri),
                               cpu="4", memory="16Gi", gpu=1)
        evaluated_real = on_cluster(evaluate_real(work_root=work_root, model=trained.outputs["model"],
                                                  store=real.outputs["store"], kb=kb.outputs["kb"],
                                                  n_bootstrap=real_n_bootstrap, seed=seed),
                                    cpu="4", memory="16Gi", gpu=1)
        with dsl.If(serve == True, name="serve"):  # noqa: E712
            reg = on_cluster(register(work_root=work_root, model=trained.outputs["model"],
                                      evaluation=evaluated.outputs["evaluation"],
                                      evaluation_real=evaluated_real.outputs["evaluation"], model_name=model_name,
                                      mlflow_tracking_uri=mlflow_tracking_uri))
            decision = on_cluster(promote(work_root=work_root, version=reg.outputs["version"], model_name=model_name,
                                          gates=promotion_gates, mlflow_tracking_uri=mlflow_tracking_uri))
            on_cluster(build_bento(work_root=work_root, model_uri=decision.outputs["model_uri"],
                                   mlflow_tracking_uri=mlflow_tracking_uri), cpu="2", memory="4Gi")
            score_fanout(work_root=work_root, model_uri=decision.outputs["model_uri"], records=score_input,
                         source=score_source, shards=score_shards, mlflow_tracking_uri=mlflow_tracking_uri)
    with dsl.Else(name="validation-failed"):
        stop_at_gate(report=checked.outputs["report"])
