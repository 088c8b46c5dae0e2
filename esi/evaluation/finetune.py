"""Fine-tuning: the ECG encoder + a linear head trained end to end with BCE, early stopping on validation AUC.

Used twice in a run: from the pretrained weights (fine-tune) and from a random initialisation of the same
architecture (the supervised-from-scratch baseline). The model passed in is never modified (a copy is
trained). Sized for a CPU: a few epochs, small batches, optional caps on steps and training records.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from esi.errors import EvaluationError
from esi.evaluation.metrics import best_f1_thresholds, f1_macro, macro_auc

log = logging.getLogger(__name__)


@dataclass
class FinetuneConfig:
    """Hyper-parameters of fine-tuning (defaults fit a CPU)."""

    epochs: int = 5  # maximum epochs
    patience: int = 2  # epochs without validation improvement before stopping
    batch_size: int = 32
    lr_encoder: float = 1e-4  # pretrained encoder: small steps
    lr_head: float = 1e-3
    weight_decay: float = 1e-2
    max_steps_per_epoch: int | None = None  # cap for quick runs
    max_train_records: int | None = None  # subsample the training split (fixed seed) for quick runs
    seed: int = 0


def _classifier(model: Any, width: int, n_classes: int) -> Any:
    """encoder features -> linear head, as one torch module (torch imported on use)."""
    import torch

    class Classifier(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model
            self.head = torch.nn.Linear(width, n_classes)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.model.ecg_features(x))

    return Classifier()


def _predict(net: Any, store: Any, indices: np.ndarray, batch_size: int, device: Any) -> np.ndarray:
    import torch

    net.eval()
    out = []
    with torch.no_grad():
        for _, sig in store.iter_batches(batch_size, indices):
            out.append(torch.sigmoid(net(torch.from_numpy(sig).to(device))).float().cpu().numpy())
    return np.concatenate(out)


def finetune(
    model: Any,
    store: Any,
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    class_names: list[str],
    *,
    config: FinetuneConfig | None = None,
    n_bootstrap: int = 1000,
    progress: bool = True,
    label: str = "fine-tune",
) -> dict:
    """Train encoder + head on (store indices, Y) of train, select the epoch on val, score test once."""
    import torch
    from tqdm.auto import tqdm

    cfg = config or FinetuneConfig()
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    (tr_idx, y_tr), (va_idx, y_va), (te_idx, y_te) = train, val, test
    if cfg.max_train_records and len(tr_idx) > cfg.max_train_records:
        keep = np.sort(rng.choice(len(tr_idx), cfg.max_train_records, replace=False))
        tr_idx, y_tr = tr_idx[keep], y_tr[keep]
    if len(tr_idx) == 0 or len(va_idx) == 0:
        raise EvaluationError("fine-tuning needs records in the training and validation folds")
    work = copy.deepcopy(model)
    if hasattr(work, "_esi_eval_digest"):
        del work._esi_eval_digest  # the copy's weights change: it must never hit the embedding cache
    try:
        device = next(work.parameters()).device
    except StopIteration:
        device = torch.device("cpu")
    with torch.no_grad():
        width = int(work.ecg_features(torch.from_numpy(store.signals(tr_idx[:1])).to(device)).shape[-1])
    net = _classifier(work, width, len(class_names)).to(device)
    # Only parameters on the ECG path receive gradients; AdamW skips the rest (the text tower).
    opt = torch.optim.AdamW(
        [
            {"params": list(work.parameters()), "lr": cfg.lr_encoder},
            {"params": list(net.head.parameters()), "lr": cfg.lr_head},
        ],
        weight_decay=cfg.weight_decay,
    )
    loss_fn = torch.nn.BCEWithLogitsLoss()
    best_auc, best_state, best_epoch, bad, history = -1.0, None, -1, 0, []
    t0 = time.perf_counter()
    seen = 0
    for epoch in range(cfg.epochs):
        net.train()
        order = rng.permutation(len(tr_idx))
        n_batches = int(np.ceil(len(order) / cfg.batch_size))
        if cfg.max_steps_per_epoch:
            n_batches = min(n_batches, cfg.max_steps_per_epoch)
        losses = []
        for b in tqdm(
            range(n_batches),
            desc=f"{label} epoch {epoch + 1}",
            unit="batch",
            disable=not progress,
            leave=False,
        ):
            pos = order[b * cfg.batch_size : (b + 1) * cfg.batch_size]
            # Read in store order (memory-mapped shards), keep labels aligned.
            srt = np.argsort(tr_idx[pos])
            x = torch.from_numpy(store.signals(tr_idx[pos][srt])).to(device)
            target = torch.from_numpy(y_tr[pos][srt].astype(np.float32)).to(device)
            loss = loss_fn(net(x), target)
            if not torch.isfinite(loss):
                raise EvaluationError(
                    f"{label}: non-finite loss at epoch {epoch + 1}; lower the learning rate"
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            seen += len(pos)
        s_val = _predict(net, store, va_idx, cfg.batch_size * 2, device)
        try:
            val_auc = macro_auc(y_va, s_val).macro
        except EvaluationError:
            val_auc = float("nan")
        history.append({"epoch": epoch + 1, "train_loss": float(np.mean(losses)), "val_macro_auc": val_auc})
        log.info("%s epoch %d: loss %.4f, val macro AUC %.4f", label, epoch + 1, np.mean(losses), val_auc)
        if np.isfinite(val_auc) and val_auc > best_auc:
            best_auc, best_epoch, bad = val_auc, epoch + 1, 0
            best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        else:
            bad += 1
            if bad >= cfg.patience:
                break
    if best_state is not None:
        net.load_state_dict(best_state)
    s_val = _predict(net, store, va_idx, cfg.batch_size * 2, device)
    s_test = _predict(net, store, te_idx, cfg.batch_size * 2, device)
    auc = macro_auc(y_te, s_test, class_names, n_bootstrap=n_bootstrap, seed=cfg.seed)
    thresholds = best_f1_thresholds(y_va, s_val)
    elapsed = time.perf_counter() - t0
    return {
        **auc.to_dict(),
        "f1_macro": f1_macro(y_te, s_test, thresholds),
        "best_epoch": best_epoch,
        "best_val_macro_auc": best_auc,
        "history": history,
        "n_train": int(len(tr_idx)),
        "train_records_per_s": seen / max(elapsed, 1e-9),
        "seconds": elapsed,
        "_scores_test": s_test,
    }
