"""A 2-process gloo DDP run through the real entry point (the env torchrun sets, env:// rendezvous)."""

from __future__ import annotations

import json
from pathlib import Path

import torch.multiprocessing as mp
from train_helpers import ddp_worker, free_port, write_captions, write_store

from esi.train.config import PretrainConfig


def test_two_rank_gloo_run_completes_and_only_rank0_writes(tmp_path: Path) -> None:
    store = write_store(tmp_path / "store", 32)
    captions = write_captions(tmp_path / "captions.parquet", 32)
    out = tmp_path / "run"
    config = PretrainConfig(model="esi_test", store=str(store), captions=str(captions), out=str(out),
                            epochs=2, batch_size=4, lr=2e-3, warmup_epochs=0.5, checkpoint_every_steps=3,
                            num_workers=0, mlflow=False)
    results = tmp_path / "results"
    results.mkdir()
    mp.spawn(ddp_worker, args=(2, free_port(), config.to_dict(), str(results)), nprocs=2, join=True)
    r0, r1 = (json.loads((results / f"rank{r}.json").read_text()) for r in (0, 1))
    # 32 records over 2 ranks of 4: 4 steps per epoch, as a single process with batch 8
    assert r0["steps"] == r1["steps"] == 8 and r0["completed"] and r1["completed"]
    assert r0["run_dir"] == r1["run_dir"] == str(out)
    assert r0["losses"] == r1["losses"]  # logged losses are averaged over ranks
    assert r0["saves"] == [3, 4, 6, 8] and r1["saves"] == []
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [
        "step-000000004.pt", "step-000000006.pt", "step-000000008.pt"]
    from esi.models.checkpoint import load_model

    assert load_model(out / "model.pt").checkpoint_extra["pretrain"]["step"] == 8
