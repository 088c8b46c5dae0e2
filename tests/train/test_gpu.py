"""CUDA paths: bf16 autocast pretraining and NCCL. Run on a GPU machine with ``pytest -m gpu``."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from train_helpers import write_captions, write_store

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def test_bf16_pretraining_on_cuda(tmp_path: Path) -> None:
    from esi.models.checkpoint import load_model
    from esi.train.config import PretrainConfig
    from esi.train.loop import pretrain, resolve_precision

    assert resolve_precision("auto", torch.device("cuda")) == torch.bfloat16
    store = write_store(tmp_path / "store", n=32)
    captions = write_captions(tmp_path / "captions.parquet", n=32)
    cfg = PretrainConfig(model="esi_test", store=str(store), captions=str(captions),
                         out=str(tmp_path / "run"), epochs=2, batch_size=8, warmup_epochs=0.5, lr=1e-3,
                         device="cuda", precision="bf16", mlflow=False)
    result = pretrain(cfg, progress=False)
    losses = [h["loss"] for h in result.history if h.get("loss") is not None]
    assert losses and all(math.isfinite(v) for v in losses)
    model = load_model(result.final_checkpoint)
    assert all(torch.isfinite(p).all() for p in model.parameters())
