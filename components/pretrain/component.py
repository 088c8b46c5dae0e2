"""Pretrain the ECG-text model: in this process, under torchrun, or as a PyTorchJob / TrainJob on the cluster."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from components import COMPONENT_OPTIONS


@dsl.component(**COMPONENT_OPTIONS)
def pretrain(work_root: str, store: Input[Dataset], captions: Input[Dataset], model: Output[Model],
             real_store: Input[Dataset] = None, real_captions: Input[Dataset] = None, mix_real: bool = True,
             model_config: str = "esi_cpu", epochs: int = 3, batch_size: int = 16, lr: float = 5e-4,
             seed: int = 0, freeze_ecg_stages: int = 3, launcher: str = "in-process", nproc_per_node: int = 4,
             nodes: int = 1,
             namespace: str = "esi", image: str = "", timeout_s: int = 86400, cleanup: str = "on-success",
             mlflow_tracking_uri: str = ""):
    """LAUNCHER: in-process | torchrun (NPROC_PER_NODE local processes) | pytorchjob | trainjob (the cluster
    job of esi.pipeline.jobspec, NODES x NPROC_PER_NODE GPUs, waited for; its log is streamed here).
    FREEZE_ECG_STAGES: the ECG encoder's first N stages keep their initial weights (0: all train).
    MIX_REAL: pretrain on the captioned REAL_STORE too (PretrainConfig.mix; its evaluation part never is)."""
    from esi.pipeline.kfp_steps import init_step, real_mix
    from esi.pipeline.launcher import pretrain_config, run_pretrain

    p = init_step(work_root, mlflow_tracking_uri=mlflow_tracking_uri)
    mix = real_mix(real_store.metadata if real_store is not None else None,
                   real_captions.metadata if real_captions is not None else None, mix_real)
    config = pretrain_config(model_config, store.metadata["path"], captions.metadata["path"], p["pretrain"],
                             epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
                             freeze_ecg_stages=freeze_ecg_stages, mix=mix)
    r = run_pretrain(config, launcher=launcher, nproc_per_node=nproc_per_node, nodes=nodes, namespace=namespace,
                     image=image, timeout_s=timeout_s, cleanup=cleanup)
    model.metadata.update({k: v for k, v in r.items() if isinstance(v, (int, float, str, bool))})
    model.metadata["mix"] = [m["store"] for m in mix]
    with open(model.path, "w") as fh:
        fh.write(r["checkpoint"] + "\n")
