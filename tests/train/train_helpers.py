"""Tiny stores and caption tables written straight from numpy arrays (the layout of esi.data.store).

Signals carry their caption's class (a sinusoid whose frequency and lead pattern depend on the class), so a
model can learn the pairing: the loss of a short run goes down for a reason, not by chance.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from esi.data.record import LEADS
from esi.data.store import atomic_write_parquet
from esi.data.store import write_store as write_store_arrays

CLASSES = [
    "sinus rhythm, normal ECG",
    "atrial fibrillation with irregular RR intervals and no P waves",
    "right bundle branch block with prolonged QRS and rSR' pattern in V1",
    "sinus bradycardia with ST depression in lateral leads",
]

N_SAMPLES = 1000  # 2 s at 500 Hz keeps the tests fast; the model accepts any length


def write_store(path: Path, n: int = 32, *, n_samples: int = N_SAMPLES, shard_size: int = 16,
                seed: int = 0, quarantine: Sequence[str] = (), nan_rows: Sequence[int] = (),
                folds: Sequence[int] | None = None) -> Path:
    """Write a complete store of ``n`` records (record ids r000, r001, ...) and return its path."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    t = np.arange(n_samples) / 500.0
    signals = np.zeros((n, len(LEADS), n_samples), np.float32)
    rows = []
    for i in range(n):
        c = i % len(CLASSES)
        base = np.sin(2 * np.pi * (1.0 + c) * t + rng.uniform(0, 2 * np.pi))
        gains = np.linspace(0.2, 1.0, len(LEADS))[:: 1 if c % 2 == 0 else -1]
        signals[i] = gains[:, None] * base[None, :] + rng.normal(0, 0.05, (len(LEADS), n_samples))
        if i in nan_rows:
            signals[i] = np.nan
        rows.append({
            "record_id": f"r{i:03d}", "source": "synthetic", "subject_id": f"s{i // 2:03d}",
            "age": 40 + i % 40,
            "sex": "M" if i % 2 else "F", "fold": int(folds[i]) if folds is not None else 1 + i % 10,
            "label_system": "none", "labels": json.dumps({f"c{c}": 100.0}), "conditions": json.dumps({}),
            "report": CLASSES[c], "path": f"synthetic/r{i:03d}", "original_fs": 500.0,
            "original_n_samples": n_samples, "window": 0, "padded_samples": 0, "nan_fraction": 0.0,
            "nan_filled": False, "unmapped": "[]",
        })
    write_store_arrays(path, rows, signals, shard_size=shard_size)
    if quarantine:
        quarantined = pd.DataFrame({"record_id": list(quarantine), "failed": ["test"] * len(quarantine)})
        atomic_write_parquet(path / "quarantine.parquet", quarantined)
    return path


def write_captions(path: Path, n: int = 32, *, skip: Sequence[int] = ()) -> Path:
    """A captions parquet as the caption step writes it (record_id, caption + provenance columns)."""
    import pandas as pd

    ids = [i for i in range(n) if i not in set(skip)]
    df = pd.DataFrame({
        "record_id": [f"r{i:03d}" for i in ids],
        "caption": [f"{40 + i % 40}-year-old {'male' if i % 2 else 'female'}. {CLASSES[i % len(CLASSES)]}."
                    for i in ids],
        "signature": [f"c{i % len(CLASSES)}" for i in ids], "generator": "test", "prompt_version": "1",
    })
    atomic_write_parquet(path, df)
    return path


def free_port() -> int:
    """A free TCP port on loopback for a process group's rendezvous."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


PROBE_CAPTIONS = [  # rank 0 gets the two short captions, rank 1 the long ones: unequal token counts
    "sinus rhythm",
    "normal ecg",
    "atrial fibrillation with rapid ventricular response and no p waves in any lead",
    "sinus bradycardia with st depression in lateral leads and t wave inversion in v5 v6",
]


def probe_batch(model, rows: slice = slice(None)) -> dict:  # type: ignore[no-untyped-def]
    """A fixed 4-record batch (rows of it), trimmed to its longest caption as collate does."""
    import torch

    g = torch.Generator().manual_seed(123)
    signal = torch.randn(len(PROBE_CAPTIONS), 12, 640, generator=g)[rows]
    enc = model.tokenize(PROBE_CAPTIONS[rows])
    return {"signal": signal, **enc}


def probe_step(model, batch, info) -> tuple[dict, dict]:  # type: ignore[no-untyped-def]
    """One micro-batch through the trainer's Stepper (DDP-wrapped when ``info`` is distributed): the losses
    of this rank and the parameter gradients (after DDP's all-reduce)."""
    from esi.losses import CoCaLoss
    from esi.train.schedule import build_optimizer, build_scheduler
    from esi.train.step import Stepper

    wrapped = model
    if info.distributed:
        from torch.nn.parallel import DistributedDataParallel as DDP

        wrapped = DDP(model)
    opt = build_optimizer(model, 1e-3, 0.05)
    stepper = Stepper(wrapped, model, CoCaLoss(), opt, build_scheduler(opt, 1, 0, 1, 0.1), info)
    losses = stepper.micro(batch, last=True, caption_divisor=stepper.caption_divisor([batch]))
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return {k: float(v) for k, v in losses.items()}, grads


def ddp_worker(rank: int, world: int, port: int, config: dict, result_dir: str) -> None:
    """One rank of a gloo DDP run (torch.multiprocessing.spawn target): sets the env torchrun would set,
    runs one probe step on its share of :func:`probe_batch`, then the real ``pretrain`` (recording which
    ranks write checkpoints), and writes its view to result_dir/rank<r>.json (+ probe grads in rank<r>.pt)."""
    import os

    import torch

    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    import esi.train.loop as loop
    from esi.models import create_model
    from esi.train.config import PretrainConfig
    from esi.train.distributed import barrier, cleanup, init_distributed

    info = init_distributed("cpu")  # pretrain below joins this group instead of creating one
    try:
        torch.manual_seed(0)
        model = create_model("esi_test").eval()  # eval: no dropout, the same function in every process
        share = len(PROBE_CAPTIONS) // world
        losses, grads = probe_step(model, probe_batch(model, slice(rank * share, (rank + 1) * share)), info)
        torch.save({"losses": losses, "grads": grads}, Path(result_dir, f"rank{rank}.pt"))

        saves: list[int] = []
        original = loop.save_training_checkpoint

        def spy(run_dir, model, training, extra=None, keep=3):  # type: ignore[no-untyped-def]
            saves.append(int(training["state"]["step"]))
            return original(run_dir, model, training, extra, keep)

        loop.save_training_checkpoint = spy
        result = loop.pretrain(PretrainConfig.from_dict(config), progress=False)
        Path(result_dir, f"rank{rank}.json").write_text(json.dumps({
            "saves": saves, "lrs": [h["lr"] for h in result.history], "run_dir": str(result.run_dir),
            "steps": result.steps, "completed": result.completed}))
    finally:
        barrier(info)
        cleanup(info)
