"""The comparison report's figures (matplotlib, Agg backend; each written atomically as PNG)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from esi.data.compare.features import HIST_EDGES, feature_unit
from esi.data.record import LEADS
from esi.data.store import atomic_write_bytes

PLOT_FILES = ("gaps.png", "distributions.png", "lead_amplitudes.png", "amplitude_hist.png", "psd.png",
              "conditions.png", "ludb.png")
COLORS = {"synthetic": "tab:orange", "real": "tab:blue"}
DIST_FEATURES = ("hr_bpm", "rr_cv", "pr_ms", "qrs_ms", "qt_ms", "qtc_ms", "axis_deg", "noise_db",
                 "baseline_db", "powerline_share_db", "std_mv[II]", "qrs_amp_mv[V2]")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> str:
    buf = io.BytesIO()
    # no bbox_inches="tight": callers lay out with tight_layout, and a second layout pass doubles the cost
    fig.savefig(buf, format="png", dpi=90)
    _pyplot().close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return path.name


def _plain_log(ax: Any) -> None:
    """No minor ticks on a log axis: drawing them costs most of a 12-panel figure's time."""
    from matplotlib.ticker import NullLocator

    ax.yaxis.set_minor_locator(NullLocator())


def _label(name: str) -> str:
    unit = feature_unit(name)
    return f"{name} ({unit})" if unit else name


def plot_gaps(gaps: list[dict[str, Any]], path: Path, top: int = 20) -> str:
    """Bar chart of the largest gaps, coloured by group; returns the file name."""
    plt = _pyplot()
    from matplotlib.patches import Patch

    rows = [g for g in gaps if np.isfinite(g["w_norm"])][:top][::-1]
    groups = sorted({g["group"] for g in rows})
    cmap = plt.get_cmap("tab10")
    color = {grp: cmap(i % 10) for i, grp in enumerate(groups)}
    fig, ax = plt.subplots(figsize=(8, 0.32 * max(len(rows), 4) + 1))
    ax.barh([g["feature"] for g in rows], [g["w_norm"] for g in rows], color=[color[g["group"]] for g in rows])
    ax.set_xlabel("gap: Wasserstein distance / real IQR")
    ax.set_title(f"Largest synthetic-vs-real gaps (top {len(rows)})")
    ax.legend(handles=[Patch(color=color[grp], label=grp) for grp in groups], title="group", loc="lower right",
              fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def plot_distributions(sets: dict[str, dict[str, Any]], path: Path) -> str:
    """Histograms of the main scalar measurements, both sets overlaid."""
    plt = _pyplot()
    fig, axes = plt.subplots(3, 4, figsize=(15, 9))
    for ax, name in zip(axes.flat, DIST_FEATURES, strict=True):
        data = {s: v[np.isfinite(v)] for s, v in ((s, d["frame"][name].to_numpy(np.float64))
                                                  for s, d in sets.items())}
        both = np.concatenate(list(data.values()))
        if both.size == 0:
            ax.set_title(f"{name}: nothing measured")
            continue
        lo, hi = np.percentile(both, [1, 99])
        bins = np.linspace(lo, hi if hi > lo else lo + 1, 30)
        for s, v in data.items():
            ax.hist(np.clip(v, bins[0], bins[-1]), bins=bins, density=True, alpha=0.5, color=COLORS[s],
                    label=f"{s} (n={v.size})")
        ax.set_xlabel(_label(name))
        ax.set_ylabel("density")
        ax.set_title(name)
        ax.legend(fontsize=7)
    fig.suptitle("Per-record measurements: synthetic vs real (1-99 % range; values beyond in the end bins)")
    fig.tight_layout()
    return _save(fig, path)


def plot_lead_amplitudes(sets: dict[str, dict[str, Any]], path: Path) -> str:
    """Per-lead median and IQR of the P, QRS, T amplitudes, ST level and signal std."""
    plt = _pyplot()
    kinds = ("p_amp_mv", "qrs_amp_mv", "t_amp_mv", "st_mv", "std_mv")
    fig, axes = plt.subplots(len(kinds), 1, figsize=(11, 3 * len(kinds)), sharex=True)
    x = np.arange(len(LEADS))
    for ax, kind in zip(axes, kinds, strict=True):
        for off, (s, d) in zip((-0.15, 0.15), sets.items(), strict=True):
            cols = d["frame"][[f"{kind}[{lead}]" for lead in LEADS]].to_numpy(np.float64)
            q = np.array([np.nanpercentile(c, [25, 50, 75]) if np.isfinite(c).any() else [np.nan] * 3
                          for c in cols.T])
            ax.errorbar(x + off, q[:, 1], yerr=[q[:, 1] - q[:, 0], q[:, 2] - q[:, 1]], fmt="o", capsize=3,
                        color=COLORS[s], label=f"{s}: median, IQR")
        ax.axhline(0, color="grey", lw=0.5)
        ax.set_ylabel(f"{kind} (mV)")
        ax.set_title({"p_amp_mv": "P amplitude (signed)", "qrs_amp_mv": "QRS peak-to-peak amplitude",
                      "t_amp_mv": "T amplitude (signed)", "st_mv": "ST level at J+60 ms",
                      "std_mv": "signal standard deviation"}[kind])
        ax.legend(fontsize=8)
    axes[-1].set_xticks(x, LEADS)
    axes[-1].set_xlabel("lead")
    fig.tight_layout()
    return _save(fig, path)


def plot_sample_hist(sets: dict[str, dict[str, Any]], path: Path) -> str:
    """Per-lead distribution of the stored sample values (log scale)."""
    plt = _pyplot()
    centres = (HIST_EDGES[:-1] + HIST_EDGES[1:]) / 2
    fig, axes = plt.subplots(3, 4, figsize=(15, 9), sharex=True)
    for i, (ax, lead) in enumerate(zip(axes.flat, LEADS, strict=True)):
        for s, d in sets.items():
            h = d["hist"][i].astype(np.float64)
            ax.semilogy(centres, h / max(h.sum(), 1), color=COLORS[s], label=s)
        _plain_log(ax)
        ax.set_title(f"lead {lead}")
        ax.set_xlabel("sample value (mV)")
        ax.set_ylabel("fraction of samples")
    axes.flat[0].legend()
    fig.suptitle("Per-lead amplitude distributions of the stored (preprocessed) samples")
    fig.tight_layout()
    return _save(fig, path)


def plot_psd(sets: dict[str, dict[str, Any]], path: Path) -> str:
    """Per-lead median Welch PSD of both sets."""
    plt = _pyplot()
    fig, axes = plt.subplots(3, 4, figsize=(15, 9), sharex=True)
    for i, (ax, lead) in enumerate(zip(axes.flat, LEADS, strict=True)):
        for s, d in sets.items():
            sel = d["freqs"] <= 110
            ax.semilogy(d["freqs"][sel], np.median(d["psd"][:, i], axis=0)[sel] + 1e-12, color=COLORS[s],
                        label=s)
        _plain_log(ax)
        for hz in (0.7, 40, 50, 60):
            ax.axvline(hz, color="grey", lw=0.5, ls="--")
        ax.set_title(f"lead {lead}")
        ax.set_xlabel("frequency (Hz)")
        ax.set_ylabel("PSD (mV²/Hz)")
    axes.flat[0].legend()
    fig.suptitle("Median Welch PSD over records (dashed: 0.7, 40, 50, 60 Hz)")
    fig.tight_layout()
    return _save(fig, path)


def plot_conditions(sets: dict[str, dict[str, Any]], masks: dict[str, dict[str, np.ndarray]],
                    keys: dict[str, str], path: Path) -> str:
    """Box plots of each condition's key measurement against the NORM records, in both sets."""
    plt = _pyplot()
    names = [n for n in keys if n != "NORM"]
    fig, axes = plt.subplots(1, max(1, len(names)), figsize=(4.2 * max(1, len(names)), 4), squeeze=False)
    for ax, name in zip(axes[0], names, strict=False):
        meas = keys[name]
        data, labels, colors = [], [], []
        for s, d in sets.items():
            col = d["frame"][meas].to_numpy(np.float64)
            for grp in ("NORM", name):
                if grp in masks[s]:
                    v = col[masks[s][grp]]
                    data.append(v[np.isfinite(v)])
                    labels.append(f"{s[:5]}\n{grp} (n={np.isfinite(v).sum()})")
                    colors.append(COLORS[s])
        parts = ax.boxplot([v if v.size else [np.nan] for v in data], patch_artist=True)
        for box, c in zip(parts["boxes"], colors, strict=True):
            box.set_facecolor(c)
            box.set_alpha(0.5)
        ax.set_xticks(range(1, len(labels) + 1), labels, fontsize=7)
        ax.set_ylabel(_label(meas))
        ax.set_title(f"{name}: {meas} vs NORM")
    fig.tight_layout()
    return _save(fig, path)


def plot_ludb(ludb: dict[str, Any], path: Path) -> str:
    """measure.py against LUDB's annotation: PR, QRS and QT scatter plots."""
    plt = _pyplot()
    names = ("pr_ms", "qrs_ms", "qt_ms")
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.5))
    for ax, name in zip(axes, names, strict=True):
        a = np.array([r["annotated"][name] for r in ludb["records"]])
        m = np.array([r["measured"][name] for r in ludb["records"]])
        ok = np.isfinite(a) & np.isfinite(m)
        ax.scatter(a[ok], m[ok], s=10, alpha=0.6)
        if ok.any():
            lo, hi = float(min(a[ok].min(), m[ok].min())), float(max(a[ok].max(), m[ok].max()))
            ax.plot([lo, hi], [lo, hi], color="grey", lw=1, label="identity")
        stats = ludb[name]
        ax.set_title(f"{name}: median |error| {stats.get('mae_ms', float('nan')):.0f} ms, "
                     f"bias {stats.get('bias_ms', float('nan')):+.0f} ms")
        ax.set_xlabel("LUDB annotation, lead II (ms)")
        ax.set_ylabel("measure.py (ms)")
        ax.legend(fontsize=8)
    fig.suptitle(f"measure.py vs LUDB cardiologist delineation ({ludb['n_records']} records)")
    fig.tight_layout()
    return _save(fig, path)
