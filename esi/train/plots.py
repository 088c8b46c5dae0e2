"""Training curves of a pretraining run as a PNG (RUN_DIR/loss.png)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any


def plot_history(history: list[dict[str, Any]], epochs: list[dict[str, Any]], path: str | Path) -> Path:
    """Loss curves (total, contrastive, caption; raw and smoothed) and the learning rate, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from esi.data.store import atomic_write_bytes

    fig, (ax, ax_lr) = plt.subplots(2, 1, figsize=(8, 6), sharex=True, height_ratios=[3, 1])
    steps = np.array([h["step"] for h in history])
    for key, color in (("loss", "black"), ("contrastive", "tab:blue"), ("caption", "tab:orange")):
        y = np.array([np.nan if h.get(key) is None else h[key] for h in history], dtype=float)
        if not len(y) or np.all(np.isnan(y)):
            continue
        ax.plot(steps, y, color=color, alpha=0.25, lw=0.8)
        win = max(1, len(y) // 30)
        smooth = np.convolve(np.nan_to_num(y, nan=np.nanmean(y)), np.ones(win) / win, mode="valid")
        label = key if win == 1 else f"{key} (mean of {win})"
        ax.plot(steps[win - 1:], smooth, color=color, lw=1.8, label=label)
    for e in epochs:
        ax.axvline(e["last_step"], color="grey", lw=0.5, ls=":")
    ax.set_ylabel("loss")
    ax.legend(loc="upper right", fontsize=8)
    ax.set_title("ESI pretraining")
    ax.grid(alpha=0.3)
    ax_lr.plot(steps, [h["lr"] for h in history], color="tab:green")
    ax_lr.set_ylabel("lr")
    ax_lr.set_xlabel("optimizer step")
    ax_lr.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)
