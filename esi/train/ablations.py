"""Ablation runner: pretrain + evaluate one config per ablation of the paper (Table 4, Figures 5-6).

Ablations (each a change of the base PretrainConfig; names accepted by ``esi ablate --ablations``):
- ``full``: the base config, the reference row;
- ``no_cqa``: plain captions (the record's condition names + demographics, no knowledge-base waveform text);
- ``no_caption_loss`` / ``no_contrastive_loss``: lambda_cap = 0 / lambda_con = 0;
- ``backbone_vit`` / ``backbone_xresnet``: the same size with a ViT-1D / XResNet1d encoder (``<model>_vit``);
- ``size_25`` / ``size_50``: 25% / 50% of the pretraining records;
- ``misaligned_20`` / ``misaligned_50``: that share of ECG-text pairs shuffled on purpose.
Each run writes its pretraining run folder and evaluation report under OUT/<name>; the summary table is
OUT/ablations.md (+ ablations.json).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from esi.errors import ConfigError
from esi.train.config import PretrainConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Ablation:
    """One ablation: config overrides, and whether captions are replaced by plain ones."""

    name: str
    description: str
    overrides: dict[str, Any] = field(default_factory=dict)
    plain_captions: bool = False
    backbone: str | None = None  # suffix of the model config (<model>_<backbone>)
    size_fraction: float | None = None


ABLATIONS: dict[str, Ablation] = {
    a.name: a
    for a in (
        Ablation("full", "base config (CQA captions, both losses)"),
        Ablation("no_cqa", "plain captions (condition names + demographics)", plain_captions=True),
        Ablation("no_caption_loss", "contrastive loss only", {"lambda_cap": 0.0}),
        Ablation("no_contrastive_loss", "captioning loss only", {"lambda_con": 0.0}),
        Ablation("backbone_vit", "ViT-1D encoder", backbone="vit"),
        Ablation("backbone_xresnet", "XResNet1d encoder", backbone="xresnet"),
        Ablation("size_25", "25% of the pretraining records", size_fraction=0.25),
        Ablation("size_50", "50% of the pretraining records", size_fraction=0.5),
        Ablation("misaligned_20", "20% of ECG-text pairs shuffled", {"shuffle_pairs": 0.2}),
        Ablation("misaligned_50", "50% of ECG-text pairs shuffled", {"shuffle_pairs": 0.5}),
    )
}


def parse_ablations(text: str | Sequence[str]) -> list[Ablation]:
    """'full,no_cqa' or 'all' -> ablations; unknown names are a ConfigError listing the known ones."""
    names = [n.strip() for n in (text.split(",") if isinstance(text, str) else text) if n.strip()]
    if "all" in names:
        return list(ABLATIONS.values())
    bad = [n for n in names if n not in ABLATIONS]
    if bad or not names:
        raise ConfigError(f"unknown ablation(s) {bad or '(none)'}; choose from all, {', '.join(ABLATIONS)}")
    return [ABLATIONS[n] for n in dict.fromkeys(names)]


def plain_captions(store_path: str | Path, out: str | Path) -> Path:
    """Captions without the knowledge base: the record's condition names, then age and sex."""
    import pandas as pd

    from esi.conditions.vocabulary import load_vocabulary
    from esi.data.store import EcgStore, atomic_write_parquet

    vocab = load_vocabulary()
    m = EcgStore(store_path).manifest
    captions = []
    for cond_json, age, sex in zip(m["conditions"], m["age"], m["sex"], strict=True):
        cond = json.loads(cond_json) if cond_json else {}
        names = [vocab.get(c).name for c, v in sorted(cond.items(), key=lambda kv: -kv[1]) if vocab.get(c)]
        text = ", ".join(names) if names else "no listed condition"
        who = {"M": "male", "F": "female"}.get(sex, "patient")
        age_text = f", {int(age)} years" if age is not None and age == age else ""
        captions.append(f"{text}. {who}{age_text}.")
    out = Path(out)
    atomic_write_parquet(out, pd.DataFrame({"record_id": m["record_id"].astype(str), "caption": captions}))
    return out


def _backbone_model(model: str, backbone: str) -> str:
    from esi.models import list_models

    name = f"{model}_{backbone}"
    if name not in list_models():
        raise ConfigError(
            f"no {backbone} variant of model {model!r} ({name}.json is not in esi/models/configs); "
            f"models: {', '.join(list_models())}"
        )
    return name


def ablation_config(
    base: PretrainConfig, ablation: Ablation, out: Path, n_records: int | None
) -> PretrainConfig:
    """The PretrainConfig of one ablation run (writes plain captions when needed)."""
    cfg = dataclasses.replace(base, **ablation.overrides, out=str(out / "pretrain"))
    if ablation.plain_captions:
        cfg.captions = str(plain_captions(base.store, out / "plain_captions.parquet"))
    if ablation.backbone:
        cfg.model = _backbone_model(base.model, ablation.backbone)
    if ablation.size_fraction is not None:
        total = n_records if base.limit is None else min(base.limit, n_records or base.limit)
        cfg.limit = max(1, int(round((total or 0) * ablation.size_fraction)))
    return cfg.validate()


def run_ablations(
    base: PretrainConfig,
    ablations: Sequence[Ablation],
    *,
    benchmark: str,
    root: str | Path,
    task: str | None,
    out: str | Path,
    modes: str = "zero-shot,linear-probe,identification",
    progress: bool = True,
    **eval_kwargs: Any,
) -> dict:
    """Pretrain and evaluate each ablation; returns {name: headline metrics} and writes the summary table."""
    from esi.data.store import EcgStore, atomic_write_bytes, atomic_write_json
    from esi.evaluation.run import evaluate
    from esi.train.loop import pretrain

    base.require_data()
    out = Path(out)
    store = EcgStore(base.store)
    n_records = len(store.indices(folds=base.folds)) if base.folds else len(store.indices())
    summary: dict[str, dict] = {}
    for ab in ablations:
        run_out = out / ab.name
        cfg = ablation_config(base, ab, run_out, n_records)
        t0 = time.perf_counter()
        log.info("ablation %s: %s", ab.name, ab.description)
        result = pretrain(cfg, progress=progress)
        ev = evaluate(
            str(result.final_checkpoint),
            benchmark,
            root,
            task,
            modes,
            run_out / "evaluation",
            progress=progress,
            **eval_kwargs,
        )
        summary[ab.name] = {
            "description": ab.description,
            "model": cfg.model,
            "checkpoint": str(result.final_checkpoint),
            "seconds": time.perf_counter() - t0,
            "metrics": ev.headline(),
            "report": str(ev.out),
        }
        atomic_write_json(out / "ablations.json", summary)  # after each run: partial results survive a crash
    atomic_write_bytes(out / "ablations.md", ablation_table(summary).encode())
    return summary


def ablation_table(summary: dict[str, dict]) -> str:
    """Markdown table: one row per ablation with the headline metrics (as the paper's Table 4)."""
    cols = [
        ("linear_probe_100pct_macro_auc", "Linear probe AUC (100%)"),
        ("linear_probe_1pct_macro_auc", "Linear probe AUC (1%)"),
        ("zero_shot_macro_auc", "Zero-shot AUC"),
        ("identification_top1_accuracy", "Identification ACC"),
    ]
    present = [(k, t) for k, t in cols if any(k in s["metrics"] for s in summary.values())]
    lines = [
        "| Ablation | Description | Model | " + " | ".join(t for _, t in present) + " |",
        "| --- | --- | --- | " + " | ".join("---" for _ in present) + " |",
    ]
    for name, s in summary.items():
        vals = [f"{s['metrics'][k]:.3f}" if k in s["metrics"] else "-" for k, _ in present]
        lines.append(f"| {name} | {s['description']} | {s['model']} | " + " | ".join(vals) + " |")
    return "\n".join(lines) + "\n"
