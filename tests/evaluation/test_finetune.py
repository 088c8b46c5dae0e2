"""Fine-tuning keeps the best validation epoch; the from-scratch baseline picks its own learning rate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from esi.evaluation.benchmarks import load_benchmark
from esi.evaluation.finetune import FinetuneConfig, finetune
from esi.evaluation.run import best_of_lr_grid


@pytest.fixture(scope="module")
def model():
    import torch

    from esi.models import create_model

    torch.manual_seed(0)
    return create_model("esi_test")


def test_early_stopping_restores_the_best_validation_epoch(model, labelled_store: Path) -> None:
    """Validation labels are the training labels inverted, so validation AUC peaks early and then falls: the
    test split is the validation split, so the reported test AUC must be the best epoch's validation AUC."""
    from esi.data.store import EcgStore

    b = load_benchmark("ptbxl", labelled_store, "superdiagnostic")
    tr, va = b.split("train"), b.split("val")
    inverted = (va[0], 1 - va[1])
    cfg = FinetuneConfig(epochs=4, patience=10, batch_size=8, lr_encoder=3e-3, lr_head=3e-3, seed=0)
    res = finetune(model, EcgStore(labelled_store), tr, inverted, inverted, b.class_names, config=cfg,
                   n_bootstrap=0, progress=False)
    val = [h["val_macro_auc"] for h in res["history"]]
    assert len(val) == 4
    best = int(np.argmax(val))
    assert best < 3 and val[best] > val[-1] + 0.02  # the premise: the peak is not the last epoch
    assert res["best_epoch"] == best + 1
    assert res["macro_auc"] == pytest.approx(val[best], abs=1e-9)  # restored, not the last epoch's weights


def test_scratch_baseline_takes_the_best_validation_lr() -> None:
    seen = []

    def run(cfg, lr):
        seen.append((cfg.lr_encoder, cfg.lr_head))
        return {"best_val_macro_auc": {1e-4: 0.6, 1e-3: 0.8, 1e-2: 0.7}[lr], "macro_auc": lr}

    best = best_of_lr_grid(run, FinetuneConfig(), (1e-4, 1e-3, 1e-2))
    assert best["lr"] == 1e-3 and best["macro_auc"] == 1e-3
    assert best["val_auc_by_lr"] == {"0.0001": 0.6, "0.001": 0.8, "0.01": 0.7}
    assert seen == [(1e-4, 1e-4), (1e-3, 1e-3), (1e-2, 1e-2)]  # encoder and head both get the grid's lr
