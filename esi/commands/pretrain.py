"""``esi pretrain``: CoCa-style ECG-text pretraining, one process or DDP under torchrun.

Distributed (the same command, one process per GPU/CPU slot; torchrun sets RANK, WORLD_SIZE, MASTER_ADDR...)::

    torchrun --nproc-per-node 4 -m esi.cli pretrain --config esi_tiny --store S --captions C.parquet --out RUN
    torchrun --nproc-per-node 4 $(which esi) pretrain ...
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from esi.commands._common import domain_errors, setup_logging

ALL_FOLDS = "all"
HELD_OUT_FROM = 9  # PTB-XL's recommended split: folds 9 (validation) and 10 (test) stay out of pretraining


def _parse_folds(text: str | None) -> list[int] | str | None:
    """'1-8' or '1,2,3' or '1-8,10' -> [1, ..., 8, 10]; 'all' -> 'all'; None -> None (decided by the store)."""
    if not text:
        return None
    if text.strip().lower() == ALL_FOLDS:
        return ALL_FOLDS
    folds: list[int] = []
    try:
        for part in text.split(","):
            if "-" in part:
                lo, hi = (int(x) for x in part.split("-"))
                folds.extend(range(lo, hi + 1))
            else:
                folds.append(int(part))
    except ValueError:
        raise typer.BadParameter(f"--folds {text!r}: expected e.g. 1-8 or 1,2,3") from None
    return folds


def _default_folds(store: Any) -> list[int] | None:
    """Folds 1-8 when the store has the held-out folds 9-10 (so evaluation's test fold stays unseen), else all."""
    folds = store.manifest["fold"] if "fold" in store.manifest.columns else None
    if folds is None or not folds.notna().any() or int(folds.max()) < HELD_OUT_FROM:
        return None
    typer.echo(f"pretraining on folds 1-{HELD_OUT_FROM - 1} (folds {HELD_OUT_FROM}+ are held out for evaluation; "
               "--folds all trains on every fold)")
    return list(range(1, HELD_OUT_FROM))


def _parse_overrides(items: list[str] | None) -> dict[str, Any]:
    """KEY=VALUE (VALUE parsed as JSON when it is JSON, else kept as text); dotted keys nest."""
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise typer.BadParameter(f"--model-override {item!r}: expected KEY=VALUE, e.g. embed_dim=64")
        key, raw = item.split("=", 1)
        try:
            value: Any = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        node = out
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return out


def _parse_mix(item: str) -> dict[str, str]:
    """'STORE=CAPTIONS' -> {"store": STORE, "captions": CAPTIONS}."""
    store, sep, captions = item.partition("=")
    if not sep or not store or not captions:
        raise typer.BadParameter(f"--mix {item!r}: expected STORE=CAPTIONS, e.g. --mix real=real_captions.parquet")
    return {"store": store, "captions": captions}


def _base_config(config: str, out: Path | None, resume: bool):
    """A PretrainConfig from --config: a pretrain JSON, a model JSON or a model name; on --resume without a
    pretrain JSON, the run's own RUN_DIR/config.json."""
    from esi.train.config import PretrainConfig

    path = Path(config)
    if config.endswith(".json") or path.is_file():
        if not path.is_file():
            from esi.errors import ConfigError

            raise ConfigError(f"--config {config}: file does not exist; pass a model name (esi_cpu) or a "
                              "JSON file (pretrain settings or a model config)")
        data = json.loads(path.read_text())
        if isinstance(data, dict) and ("ecg_cfg" in data or "text_cfg" in data):
            return PretrainConfig(model=str(path.resolve()))  # a model config file
        return PretrainConfig.from_json(path)
    if resume and out is not None and (out / "config.json").is_file():
        saved = PretrainConfig.from_json(out / "config.json")
        if saved.model == config or config == "esi_cpu":
            return saved
    return PretrainConfig(model=config)


def pretrain_cmd(
        config: str = typer.Option("esi_cpu", "--config", "-c",
                                   help="model name (esi_test, esi_cpu, esi_tiny, esi_base), a model JSON, "
                                        "or a pretrain settings JSON (e.g. RUN_DIR/config.json)"),
        store: Path = typer.Option(None, help="store folder (esi data prepare)"),
        captions: Path = typer.Option(None, help="captions parquet (esi caption)"),
        mix: list[str] = typer.Option(None, "--mix", help="STORE=CAPTIONS: another captioned store pretrained on "
                                      "with --store (repeatable; real-benchmark evaluation records never are)"),
        out: Path = typer.Option(None, help="run directory (default ESI_HOME/runs/pretrain-<time>)"),
        epochs: int = typer.Option(None, min=1, help="epochs [30]"),
        batch_size: int = typer.Option(None, min=1, help="records per device and micro-batch [48]"),
        grad_accum: int = typer.Option(None, min=1, help="micro-batches per optimizer step [1]"),
        lr: float = typer.Option(None, help="peak learning rate [5e-5]"),
        weight_decay: float = typer.Option(None, help="AdamW weight decay [0.05]"),
        warmup_epochs: float = typer.Option(None, help="linear warm-up epochs [5]"),
        decay_every: float = typer.Option(None, help="multiply lr by --decay-factor every N epochs [10]"),
        decay_factor: float = typer.Option(None, help="lr decay factor [0.1]"),
        grad_clip: float = typer.Option(None, help="max gradient norm, 0 = off [1.0]"),
        lambda_con: float = typer.Option(None, help="contrastive loss weight [1.0]"),
        lambda_cap: float = typer.Option(None, help="captioning loss weight [1.0]"),
        freeze_ecg_stages: int = typer.Option(None, min=0, help="keep the ECG encoder's first N stages at their "
                                              "initial weights [0; make run: 3]"),
        shuffle_pairs: float = typer.Option(None, help="fraction of ECG-text pairs to misalign [0]"),
        length_buckets: int = typer.Option(None, min=0, help="group batches by caption length over windows of "
                                           "N batches: less padding, other batch mixes; 0 = random [0]"),
        folds: str = typer.Option(None, help="store folds to train on, e.g. 1-8, or 'all' [1-8 when the store "
                                  "has folds 9-10, which evaluation uses; else all]"),
        limit: int = typer.Option(None, min=1, help="only the first N records (smoke runs)"),
        skip_missing_captions: bool = typer.Option(
            False, "--skip-missing-captions", help="train without uncaptioned records (else an error)"),
        max_steps: int = typer.Option(None, min=1, help="stop after this many optimizer steps"),
        checkpoint_every: int = typer.Option(None, min=0, help="checkpoint every N steps, and each epoch"),
        workers: int = typer.Option(None, min=0, help="DataLoader workers [ESI_NUM_WORKERS]"),
        seed: int = typer.Option(None, help="seed [0]"),
        precision: str = typer.Option(None, help="auto | bf16 (CUDA) | fp32 [auto]"),
        device: str = typer.Option(None, help="auto | cpu | cuda [auto]"),
        model_override: list[str] = typer.Option(None, "--model-override", "-m",
                                                 help="create_model override KEY=VALUE (dotted keys nest)"),
        no_augment: bool = typer.Option(False, "--no-augment", help="no signal augmentation"),
        resume: bool = typer.Option(False, "--resume", help="continue the latest checkpoint in --out"),
        no_mlflow: bool = typer.Option(False, "--no-mlflow", help="do not log to MLflow"),
        experiment: str = typer.Option(None, help="MLflow experiment [ESI_MLFLOW_EXPERIMENT]"),
        save_config: Path = typer.Option(None, help="write the resolved settings to this JSON and exit"),
        quiet: bool = typer.Option(False, "--quiet", help="no progress bar"),
) -> None:
    """Pretrain the ECG-text model on a store and its captions (DDP when launched by torchrun)."""
    setup_logging()
    base = _base_config(config, out, resume)
    changes: dict[str, Any] = {k: v for k, v in {
        "store": str(store) if store else None, "captions": str(captions) if captions else None,
        "out": str(out) if out else None, "epochs": epochs, "batch_size": batch_size,
        "grad_accum": grad_accum,
        "lr": lr, "weight_decay": weight_decay, "warmup_epochs": warmup_epochs, "decay_every": decay_every,
        "decay_factor": decay_factor, "lambda_con": lambda_con, "lambda_cap": lambda_cap,
        "freeze_ecg_stages": freeze_ecg_stages,
        "shuffle_pairs": shuffle_pairs, "length_buckets": length_buckets, "folds": _parse_folds(folds),
        "limit": limit, "max_steps": max_steps,
        "checkpoint_every_steps": checkpoint_every, "num_workers": workers, "seed": seed,
        "precision": precision, "device": device, "experiment": experiment,
    }.items() if v is not None}
    if grad_clip is not None:
        changes["grad_clip"] = grad_clip or None
    if skip_missing_captions:
        changes["missing_captions"] = "skip"
    if no_augment:
        from esi.train.config import AugmentConfig

        changes["augment"] = AugmentConfig.disabled()
    if mix:
        changes["mix"] = [_parse_mix(item) for item in mix]
    if model_override:
        changes["model_overrides"] = {**base.model_overrides, **_parse_overrides(model_override)}
    changes["resume"] = resume
    if no_mlflow:
        changes["mlflow"] = False
    parsed_folds = changes.pop("folds", None)
    if parsed_folds == ALL_FOLDS:
        changes["folds"] = None
    elif parsed_folds is not None:
        changes["folds"] = parsed_folds
    cfg = base.replace(**changes)
    if cfg.store and not save_config:
        from esi.data.store import open_store

        store = open_store(cfg.store)
        store.require_records("pretraining")  # StoreError (exit 2) before any model loads
        # The default only for a new run from a model name: a resumed run or a saved settings file keeps its folds.
        if parsed_folds is None and cfg.folds is None and not resume and not str(config).endswith(".json"):
            cfg = cfg.replace(folds=_default_folds(store))
    if save_config:
        cfg.to_json(save_config)
        typer.echo(f"wrote {save_config}")
        return
    from esi.train.loop import pretrain

    result = pretrain(cfg, progress=not quiet)
    import os

    if os.environ.get("RANK", "0") != "0":
        return
    last = result.history[-1] if result.history else {}
    typer.echo(f"run dir: {result.run_dir}")
    typer.echo(f"final checkpoint: {result.final_checkpoint}")
    typer.echo(f"steps: {result.steps} ({'all epochs done' if result.completed else 'stopped early'}), "
               f"last loss: {last.get('loss')}, {result.samples_per_s:.1f} samples/s")
    typer.echo(f"loss curves: {result.run_dir / 'loss.png'}")
    typer.echo(f"mlflow run id: {result.mlflow_run_id or '-'}")


def register(app: typer.Typer) -> None:
    app.command("pretrain")(domain_errors(pretrain_cmd))
