"""2-process gloo DDP through the real code (the env torchrun sets, env:// rendezvous): the step equals the
single-process step over the concatenated batch, the run writes from rank 0 only, and it resumes on 1 rank."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from train_helpers import ddp_worker, free_port, probe_batch, probe_step, write_captions, write_store

from esi.train.config import PretrainConfig
from esi.train.distributed import DistInfo
from esi.train.loop import pretrain


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, PretrainConfig]:
    """Two ranks: a probe step, then a pretraining run stopped at step 3 (mid-epoch 1)."""
    tmp = tmp_path_factory.mktemp("ddp")
    store = write_store(tmp / "store", 32)
    captions = write_captions(tmp / "captions.parquet", 32)
    # 32 records over 2 ranks of 4: 4 steps per epoch (8 on one rank); warm-up half an epoch, lr x0.5 per epoch
    config = PretrainConfig(model="esi_test", store=str(store), captions=str(captions), out=str(tmp / "run"),
                            epochs=2, batch_size=4, lr=2e-3, warmup_epochs=0.5, decay_every=1, decay_factor=0.5,
                            checkpoint_every_steps=2, max_steps=3, num_workers=0, mlflow=False)
    results = tmp / "results"
    results.mkdir()
    mp.spawn(ddp_worker, args=(2, free_port(), config.to_dict(), str(results)), nprocs=2, join=True)
    return results, config


def test_ddp_loss_and_gradients_equal_one_process_over_the_concatenated_batch(ddp_run) -> None:
    from esi.models import create_model

    results, _ = ddp_run
    ranks = [torch.load(results / f"rank{r}.pt") for r in (0, 1)]
    torch.manual_seed(0)
    model = create_model("esi_test").eval()
    losses, grads = probe_step(model, probe_batch(model), DistInfo())
    # each rank's loss is its share; their mean is the loss of all 4 records in one process (contrastive over
    # the gathered batch with rank offsets, caption CE over the tokens of both ranks)
    for key in ("loss", "contrastive", "caption"):
        mean = sum(r["losses"][key] for r in ranks) / 2
        assert mean == pytest.approx(losses[key], rel=1e-5, abs=1e-6), key
    # after DDP's all-reduce every rank holds the gradient of the single-process step, to float32 summation
    # order (a missing rank offset or a per-rank caption mean is off by percents). Tensors whose gradient is
    # zero up to rounding (attention key biases) are compared against the global gradient norm.
    total = torch.cat([g.flatten() for g in grads.values()]).norm()
    for r in ranks:
        assert set(r["grads"]) == set(grads)
        for name, g in grads.items():
            err = (r["grads"][name] - g).norm()
            assert err <= 1e-4 * g.norm() + 1e-6 * total, (name, float(err), float(g.norm()))


def test_ddp_run_writes_from_rank0_only(ddp_run) -> None:
    results, config = ddp_run
    r0, r1 = (json.loads((results / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0["steps"] == r1["steps"] == 3 and not r0["completed"]
    assert r0["run_dir"] == r1["run_dir"] == config.out
    assert r0["saves"] == [2, 3] and r1["saves"] == []
    assert r0["lrs"] == pytest.approx([1e-3, 2e-3, 2e-3])  # warm-up: 2 steps at 4 steps per epoch
    assert sorted(p.name for p in (Path(config.out) / "checkpoints").iterdir()) == [
        "step-000000002.pt", "step-000000003.pt"]


def test_resume_on_one_rank_rebuilds_the_schedule_in_epochs(ddp_run) -> None:
    from esi.models.checkpoint import load_model
    from esi.train.checkpointing import latest_checkpoint

    _, config = ddp_run
    r = pretrain(config.replace(max_steps=None, resume=True), progress=False)
    # 3 steps of 8 records = 24 samples of epoch 1 were done: on one rank (8 steps per epoch) that is step 6,
    # so 2 steps finish epoch 1 at the peak lr, then epoch 2's 8 steps run at half of it
    assert r.completed and r.steps == 13
    assert [h["lr"] for h in r.history[3:]] == pytest.approx([2e-3] * 2 + [1e-3] * 8)
    assert [h["epoch"] for h in r.history[3:]] == [0, 0] + [1] * 8
    _, payload = latest_checkpoint(config.out)
    assert payload["training"]["world_size"] == 1
    assert load_model(r.final_checkpoint).checkpoint_extra["pretrain"]["step"] == 13
