"""The pretraining loop: one entry point for a single process and for torchrun / a PyTorchJob (DDP).

``pretrain(config)`` builds the model and the data, trains with AdamW and the warm-up/step-decay schedule,
accumulates gradients, clips them, skips non-finite steps (and stops after too many in a row), checkpoints
atomically every N steps and every epoch, resumes exactly (same optimizer, scheduler, data position and RNG
states), logs to MLflow, and writes RUN_DIR/model.pt, history.json and loss.png. Only rank 0 writes files.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from esi.errors import ConfigError, TrainingError
from esi.train.checkpointing import (
    latest_checkpoint,
    list_checkpoints,
    rng_state,
    save_training_checkpoint,
    seed_everything,
    set_rng_state,
)
from esi.train.config import PretrainConfig
from esi.train.distributed import (
    DistInfo,
    all_reduce_mean,
    barrier,
    broadcast_object,
    cleanup,
    gather_objects,
    init_distributed,
)

log = logging.getLogger(__name__)

METRICS = ("loss", "contrastive", "caption", "accuracy")


@dataclass
class PretrainResult:
    """What a pretraining run produced."""

    run_dir: Path
    final_checkpoint: Path  # RUN_DIR/model.pt (esi.models.checkpoint.load_model reads it)
    history: list[dict[str, Any]]  # one dict per optimizer step
    mlflow_run_id: str | None
    samples_per_s: float  # over all ranks, this invocation's training time
    epochs: list[dict[str, Any]] = field(default_factory=list)  # one summary per finished epoch
    steps: int = 0
    completed: bool = False  # all epochs done (False when stopped by max_steps)


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype: bf16 on CUDA (auto or asked for), None (fp32) otherwise. Never fp16."""
    if precision == "fp32":
        return None
    if device.type != "cuda":
        if precision == "bf16":
            raise ConfigError("precision=bf16 autocasts on CUDA only; use --precision auto or fp32 on CPU")
        return None
    if not torch.cuda.is_bf16_supported():
        if precision == "bf16":
            raise ConfigError("this GPU does not support bf16; use --precision fp32")
        return None
    return torch.bfloat16


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def _default_run_dir() -> Path:
    from esi.settings import get_settings

    return get_settings().runs_dir / time.strftime("pretrain-%Y%m%d-%H%M%S")


# --- MLflow (rank 0 only) -------------------------------------------------------------------------
class _MlflowLogger:
    """Thin wrapper over MlflowClient with an explicit run id (no global active run), buffered metrics."""

    def __init__(self, experiment: str | None, run_name: str | None, run_id: str | None) -> None:
        import mlflow
        from mlflow.tracking import MlflowClient

        from esi.settings import get_settings

        settings = get_settings()
        uri = settings.tracking_uri
        mlflow.set_tracking_uri(uri)
        self.client = MlflowClient(tracking_uri=uri)
        name = experiment or settings.mlflow_experiment
        exp = self.client.get_experiment_by_name(name)
        if exp is None:
            # Local stores keep artifacts under ESI_HOME, not ./mlruns of whatever directory we run in.
            location = None
            if uri.startswith(("sqlite:", "file:")) or "://" not in uri:
                location = (settings.home.resolve() / "mlartifacts" / name).as_uri()
            exp_id = self.client.create_experiment(name, artifact_location=location)
        else:
            exp_id = exp.experiment_id
        self.new = True
        if run_id:
            try:
                self.client.get_run(run_id)
                self.client.update_run(run_id, status="RUNNING")
                self.new = False
            except Exception:
                log.warning("MLflow run %s of the checkpoint is not in %s: starting a new run", run_id, uri)
                run_id = None
        if run_id is None:
            run = self.client.create_run(exp_id, run_name=run_name, tags={"esi.stage": "pretrain"})
            run_id = run.info.run_id
        self.run_id: str = run_id
        self.uri = uri
        self._buffer: list[Any] = []

    def log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for i in range(0, len(items), 100):
            try:
                self.client.log_batch(self.run_id, params=items[i:i + 100])
            except Exception as exc:  # a resumed run may not change a logged param: keep training
                log.warning("MLflow params not logged: %s", exc)

    def metrics(self, values: dict[str, float | None], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self._buffer.extend(Metric(k, float(v), now, step) for k, v in values.items()
                            if v is not None and math.isfinite(v))

    def flush(self) -> None:
        while self._buffer:
            chunk, self._buffer = self._buffer[:900], self._buffer[900:]
            self.client.log_batch(self.run_id, metrics=chunk)

    def artifact(self, path: Path) -> None:
        self.client.log_artifact(self.run_id, str(path))

    def end(self, status: str) -> None:
        with contextlib.suppress(Exception):
            self.flush()
        self.client.set_terminated(self.run_id, status=status)


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


# --- plots ----------------------------------------------------------------------------------------
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
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)


def _branches(cfg: PretrainConfig) -> dict[str, bool]:
    """Which model branches the loss needs (a zero weight skips that branch's compute)."""
    return {"contrastive": cfg.lambda_con > 0, "caption": cfg.lambda_cap > 0}


def _freeze_unused(model: Any, dataset: Any, cfg: PretrainConfig) -> list[str]:
    """Freeze the parameters an ablation (lambda_con or lambda_cap = 0) never trains.

    They would get no gradient anyway (AdamW skips them); freezing them lets DDP run without
    find_unused_parameters. Found by one local forward/backward on two records, so it follows the model.
    """
    from esi.losses import CoCaLoss
    from esi.train.data import collate

    batch = collate([dataset[i] for i in range(min(2, len(dataset)))])
    dev = next(model.parameters()).device
    ids, mask = batch["input_ids"].to(dev), batch["attention_mask"].to(dev)
    out = model(batch["signal"].to(dev), ids, mask, **_branches(cfg))
    CoCaLoss(cfg.lambda_con, cfg.lambda_cap, rank=0, world_size=1)(out, ids, mask)["loss"].backward()
    frozen = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    for n, p in model.named_parameters():
        p.grad = None
        if n in frozen:
            p.requires_grad_(False)
    log.info("ablation (lambda_con=%s, lambda_cap=%s): %d unused parameter tensors frozen", cfg.lambda_con,
             cfg.lambda_cap, len(frozen))
    return frozen


# --- the trainer ----------------------------------------------------------------------------------
class _Trainer:
    def __init__(self, config: PretrainConfig, info: DistInfo, progress: bool) -> None:
        self.config, self.info, self.progress = config, info, progress and info.is_main

    # setup ------------------------------------------------------------------------------------------------
    def _run_dir(self) -> Path:
        run_dir = Path(self.config.out) if self.config.out else _default_run_dir()
        run_dir = Path(broadcast_object(self.info, str(run_dir)))
        if self.info.is_main:
            run_dir.mkdir(parents=True, exist_ok=True)
        barrier(self.info)
        return run_dir

    def _resume_state(self, run_dir: Path) -> dict[str, Any] | None:
        cfg = self.config
        found = latest_checkpoint(run_dir) if self.info.is_main else None
        path = broadcast_object(self.info, str(found[0]) if found else None)
        if path is None:
            if cfg.resume:
                log.info("no checkpoint in %s: starting a fresh run", run_dir)
            return None
        if not cfg.resume:
            raise ConfigError(f"{run_dir} already holds checkpoints ({Path(path).name}); pass --resume to "
                              "continue that run, or choose another --out")
        from esi.train.checkpointing import load_training_checkpoint

        state = found[1] if found else load_training_checkpoint(path)
        saved = PretrainConfig.from_dict(state["train_config"], source=path)
        diff = cfg.locked_differences(saved)
        if diff:
            raise ConfigError(f"cannot resume {run_dir} with other {', '.join(diff)} than the run used; pass "
                              f"the same values (see {run_dir / 'config.json'}) or start a new run with "
                              "another --out")
        log.info("resuming from %s (step %d, epoch %d)", path, state["step"], state["epoch"])
        return state

    def _data(self, model: Any, run_dir: Path):
        from esi.train.data import (
            PretrainDataset,
            ResumableDistributedSampler,
            load_captions,
            tokenize_captions,
        )

        cfg, info = self.config, self.info
        captions = load_captions(cfg.captions)
        dataset = PretrainDataset(cfg.store, captions, augment=cfg.augment, seed=cfg.seed,
                                  shuffle_pairs=cfg.shuffle_pairs, folds=cfg.folds, limit=cfg.limit,
                                  missing_captions=cfg.missing_captions, captions_path=str(cfg.captions))
        max_length = int(cfg.text_max_length or model.max_text_len)
        cache = run_dir / "cache"
        tokens = None
        if info.is_main:
            tokens = tokenize_captions(model, dataset.texts, max_length, cache, progress=self.progress)
        barrier(info)
        if tokens is None:  # other ranks read what rank 0 wrote (or tokenise themselves if that failed)
            tokens = tokenize_captions(model, dataset.texts, max_length, cache, build=False) or \
                tokenize_captions(model, dataset.texts, max_length, None)
        dataset.set_tokens(*tokens)
        sampler = ResumableDistributedSampler(dataset, num_replicas=info.world_size, rank=info.rank,
                                              seed=cfg.seed)
        batches = sampler.num_samples // cfg.batch_size
        steps_per_epoch = batches // cfg.grad_accum
        if steps_per_epoch < 1:
            raise ConfigError(
                f"{len(dataset)} records give {batches} full batch(es) of {cfg.batch_size} per rank over "
                f"{info.world_size} rank(s), fewer than grad_accum={cfg.grad_accum}: lower --batch-size or "
                "--grad-accum, or use more records")
        return dataset, sampler, steps_per_epoch

    def _loader(self, dataset: Any, sampler: Any, epoch: int):
        from torch.utils.data import DataLoader

        from esi.train.data import collate

        cfg = self.config
        if cfg.num_workers is None:
            from esi.settings import get_settings

            workers = get_settings().num_workers
        else:
            workers = cfg.num_workers
        # Its own generator: creating an iterator then does not draw from the global RNG, which a resumed
        # run must find exactly as the uninterrupted run left it.
        gen = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)
        return DataLoader(dataset, batch_size=cfg.batch_size, sampler=sampler, num_workers=workers,
                          collate_fn=collate, drop_last=True, generator=gen,
                          pin_memory=self.info.device.type == "cuda",
                          prefetch_factor=2 if workers > 0 else None)

    # checkpoint -------------------------------------------------------------------------------------------
    def _save(self, run_dir: Path, model: Any, optimizer: Any, scheduler: Any, st: dict[str, Any]) -> None:
        rngs = gather_objects(self.info, rng_state())  # collective: every rank calls it
        if not self.info.is_main:
            return
        state = {
            "model_name": self.config.model, "model_config": model.config_dict(),
            "model_state": model.state_dict(), "train_config": self.config.to_dict(),
            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "step": st["step"], "epoch": st["epoch"], "samples_in_epoch": st["samples_in_epoch"],
            "world_size": self.info.world_size, "rng": rngs, "history": st["history"], "epochs": st["epochs"],
            "nonfinite": {"consecutive": st["consecutive_bad"], "total": st["total_bad"]},
            "mlflow_run_id": st["mlflow_run_id"], "saved": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        path = save_training_checkpoint(run_dir, state, keep=self.config.keep_checkpoints)
        st["last_saved_step"] = st["step"]
        log.debug("checkpoint %s", path)

    # main -------------------------------------------------------------------------------------------------
    def run(self) -> PretrainResult:
        from esi.losses import CoCaLoss
        from esi.models import create_model
        from esi.models.checkpoint import load_state_strict
        from esi.train.schedule import build_optimizer, build_scheduler

        cfg, info = self.config, self.info
        autocast_dtype = resolve_precision(cfg.precision, info.device)
        run_dir = self._run_dir()
        resumed = self._resume_state(run_dir)
        if info.is_main:
            cfg.replace(out=str(run_dir), resume=False).to_json(run_dir / "config.json")

        seed_everything(cfg.seed)  # identical initial weights on every rank (DDP also broadcasts rank 0's)
        model = create_model(cfg.model, **cfg.model_overrides)
        if resumed is not None:
            load_state_strict(model, resumed["model_state"])
        model.to(info.device)
        n_params = sum(p.numel() for p in model.parameters())
        dataset, sampler, steps_per_epoch = self._data(model, run_dir)

        if cfg.lambda_con == 0 or cfg.lambda_cap == 0:
            _freeze_unused(model, dataset, cfg)
        optimizer = build_optimizer(model, cfg.lr, cfg.weight_decay, tuple(cfg.betas), cfg.eps)
        scheduler = build_scheduler(optimizer, steps_per_epoch, cfg.warmup_epochs, cfg.decay_every,
                                    cfg.decay_factor)
        st: dict[str, Any] = {"step": 0, "epoch": 0, "samples_in_epoch": 0, "history": [], "epochs": [],
                              "consecutive_bad": 0, "total_bad": 0, "mlflow_run_id": None,
                              "last_saved_step": -1}
        seed_everything(cfg.seed + 1 + info.rank)  # per-rank stream for dropout and the like
        if resumed is not None:
            optimizer.load_state_dict(resumed["optimizer"])
            scheduler.load_state_dict(resumed["scheduler"])
            st.update(step=resumed["step"], epoch=resumed["epoch"],
                      samples_in_epoch=resumed["samples_in_epoch"], history=list(resumed["history"]),
                      epochs=list(resumed["epochs"]), consecutive_bad=resumed["nonfinite"]["consecutive"],
                      total_bad=resumed["nonfinite"]["total"], mlflow_run_id=resumed.get("mlflow_run_id"),
                      last_saved_step=resumed["step"])
            rngs = resumed["rng"]
            if len(rngs) == info.world_size:
                set_rng_state(rngs[info.rank])
            else:
                log.warning("resuming a %d-rank run on %d ranks: RNG streams re-seeded", len(rngs),
                            info.world_size)

        ddp_model: Any = model
        if info.distributed:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ddp_model = DDP(model, device_ids=[info.device.index] if info.device.type == "cuda" else None)
        loss_fn = CoCaLoss(cfg.lambda_con, cfg.lambda_cap)

        ml: _MlflowLogger | None = None
        ml_error = None
        if info.is_main and cfg.mlflow:
            try:
                ml = _MlflowLogger(cfg.experiment, cfg.run_name or run_dir.name, st["mlflow_run_id"])
            except Exception as exc:  # tell the other ranks instead of leaving them waiting in a collective
                ml_error = f"{type(exc).__name__}: {exc}"
        ml_error = broadcast_object(info, ml_error)
        if ml_error:
            from esi.settings import get_settings

            raise ConfigError(f"MLflow tracking at {get_settings().tracking_uri} failed ({ml_error}); fix "
                              "MLFLOW_TRACKING_URI or pass --no-mlflow")
        if ml is not None:
            st["mlflow_run_id"] = ml.run_id
            if ml.new:
                ml.log_params({**_flatten(cfg.to_dict()), "out": str(run_dir), "world_size": info.world_size,
                               "n_params": n_params, "n_records": len(dataset),
                               "n_quarantined_excluded": dataset.n_quarantined,
                               "n_missing_captions": dataset.n_missing_captions,
                               "n_misaligned": dataset.n_misaligned, "steps_per_epoch": steps_per_epoch,
                               "device": str(info.device), "autocast": str(autocast_dtype)})
        st["mlflow_run_id"] = broadcast_object(info, st["mlflow_run_id"])
        log.info("pretraining %s (%.1fM params) on %d records, %d step(s)/epoch x %d epochs, %d rank(s), %s",
                 cfg.model, n_params / 1e6, len(dataset), steps_per_epoch, cfg.epochs, info.world_size,
                 info.device)
        try:
            samples, seconds = self._train(ddp_model, model, loss_fn, optimizer, scheduler, dataset, sampler,
                                           steps_per_epoch, autocast_dtype, run_dir, st, ml)
        except BaseException as exc:
            if ml is not None:
                ml.end("KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED")
            raise
        completed = st["epoch"] >= cfg.epochs
        final = run_dir / "model.pt"
        if info.is_main:
            self._finish(model, run_dir, final, st, ml, completed)
        barrier(info)
        return PretrainResult(run_dir=run_dir, final_checkpoint=final, history=st["history"],
                              mlflow_run_id=st["mlflow_run_id"],
                              samples_per_s=samples / seconds if seconds else 0.0,
                              epochs=st["epochs"], steps=st["step"], completed=completed)

    def _train(self, ddp_model: Any, model: Any, loss_fn: Any, optimizer: Any, scheduler: Any, dataset: Any,
               sampler: Any, steps_per_epoch: int, autocast_dtype: torch.dtype | None, run_dir: Path,
               st: dict[str, Any], ml: _MlflowLogger | None) -> tuple[int, float]:
        from tqdm import tqdm

        cfg, info = self.config, self.info
        dev = info.device
        micro_per_epoch = steps_per_epoch * cfg.grad_accum
        global_batch = cfg.batch_size * info.world_size
        samples_total, seconds_total = 0, 0.0
        params = [p for p in model.parameters() if p.requires_grad]
        clip = cfg.grad_clip if cfg.grad_clip else float("inf")
        branches = _branches(cfg)

        def autocast():
            if autocast_dtype is None:
                return contextlib.nullcontext()
            return torch.autocast(device_type=dev.type, dtype=autocast_dtype)

        while st["epoch"] < cfg.epochs and (cfg.max_steps is None or st["step"] < cfg.max_steps):
            epoch = st["epoch"]
            # Position inside the epoch, in whole optimizer steps, from the global samples consumed (works
            # when the number of ranks changed between the interruption and the resume).
            done_micro = (st["samples_in_epoch"] // global_batch) // cfg.grad_accum * cfg.grad_accum
            dataset.set_epoch(epoch)
            sampler.set_epoch(epoch)
            sampler.set_start(done_micro * cfg.batch_size)
            loader = self._loader(dataset, sampler, epoch)
            ddp_model.train()
            bar = tqdm(total=steps_per_epoch, initial=done_micro // cfg.grad_accum, disable=not self.progress,
                       desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="step", dynamic_ncols=True)
            acc = torch.zeros(len(METRICS), dtype=torch.float32, device=dev)  # stays on the device: no sync
            micro = done_micro
            t_step = time.perf_counter()
            epoch_t0, epoch_samples = t_step, 0
            stopped = False
            logit_scale: Any = float("nan")
            for batch in loader:
                if micro >= micro_per_epoch:
                    break
                sig = batch["signal"].to(dev, non_blocking=True)
                ids = batch["input_ids"].to(dev, non_blocking=True)
                mask = batch["attention_mask"].to(dev, non_blocking=True)
                last_micro = (micro + 1) % cfg.grad_accum == 0
                # DDP: no gradient all-reduce on the micro-batches before the last one of a step
                skip_sync = info.distributed and not last_micro
                sync = ddp_model.no_sync() if skip_sync else contextlib.nullcontext()
                with sync:
                    with autocast():
                        out = ddp_model(sig, ids, mask, **branches)
                        losses = loss_fn(out, ids, mask)
                    (losses["loss"] / cfg.grad_accum).backward()
                acc += torch.stack([torch.as_tensor(losses[k], device=dev).detach().float().reshape(())
                                    for k in METRICS])
                logit_scale = out["logit_scale"].detach()
                micro += 1
                if not last_micro:
                    continue
                # --- one optimizer step -----------------------------------------------------------
                vals = all_reduce_mean(info, acc / cfg.grad_accum).double().cpu()
                acc.zero_()
                grad_norm = float(torch.nn.utils.clip_grad_norm_(params, clip))
                lr = optimizer.param_groups[0]["lr"]
                finite = math.isfinite(grad_norm) and bool(torch.isfinite(vals).all())
                if finite:
                    optimizer.step()
                    st["consecutive_bad"] = 0
                else:
                    st["consecutive_bad"] += 1
                    st["total_bad"] += 1
                    log.warning("step %d: non-finite loss/gradient (loss %s, grad norm %s): update "
                                "skipped (%d in a row)", st["step"] + 1, float(vals[0]), grad_norm,
                                st["consecutive_bad"])
                optimizer.zero_grad(set_to_none=True)
                with warnings.catch_warnings():  # a skipped first step is not the misuse torch warns about
                    warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step")
                    scheduler.step()
                st["step"] += 1
                st["samples_in_epoch"] = micro * global_batch
                now = time.perf_counter()
                step_samples = cfg.grad_accum * global_batch
                sps = step_samples / max(now - t_step, 1e-9)
                seconds_total += now - t_step
                samples_total += step_samples
                epoch_samples += step_samples
                t_step = now
                named = {k: _finite(float(v)) for k, v in zip(METRICS, vals, strict=True)}
                rec = {"step": st["step"], "epoch": epoch, **named,
                       "lr": lr, "logit_scale": _finite(float(torch.as_tensor(logit_scale).float().mean())),
                       "grad_norm": _finite(grad_norm),
                       "samples_per_s": sps, "skipped": not finite}
                st["history"].append(rec)
                if st["consecutive_bad"] >= cfg.max_nonfinite_steps:
                    raise TrainingError(
                        f"{st['consecutive_bad']} consecutive steps had a non-finite loss or gradient (step "
                        f"{st['step']}); lower --lr, use --precision fp32, check the data for NaNs "
                        f"('esi validate') or resume from an earlier checkpoint in {run_dir / 'checkpoints'}")
                if ml is not None:
                    keys = (*METRICS, "lr", "logit_scale", "grad_norm", "samples_per_s")
                    ml.metrics({k: rec[k] for k in keys}, st["step"])
                    if st["step"] % cfg.log_every_steps == 0:
                        ml.flush()
                bar.update(1)
                bar.set_postfix(loss=f"{rec['loss']:.4f}" if rec["loss"] is not None else "nan",
                                lr=f"{lr:.2e}", sps=f"{sps:.1f}")
                if cfg.checkpoint_every_steps and st["step"] % cfg.checkpoint_every_steps == 0:
                    self._save(run_dir, model, optimizer, scheduler, st)
                if cfg.max_steps is not None and st["step"] >= cfg.max_steps:
                    stopped = True
                    break
            bar.close()
            del loader
            if stopped and micro < micro_per_epoch:
                if st["last_saved_step"] != st["step"]:
                    self._save(run_dir, model, optimizer, scheduler, st)
                log.info("stopped at max_steps=%d (epoch %d, step %d)", cfg.max_steps, epoch + 1, st["step"])
                break
            # --- end of epoch ---------------------------------------------------------------------
            ep_hist = [h for h in st["history"] if h["epoch"] == epoch and not h["skipped"]]
            elapsed = time.perf_counter() - epoch_t0
            summary = {"epoch": epoch, "last_step": st["step"],
                       **{k: sum(h[k] for h in ep_hist) / len(ep_hist) if ep_hist else None
                          for k in METRICS},
                       "lr": st["history"][-1]["lr"] if st["history"] else None,
                       "seconds": elapsed, "samples_per_s": epoch_samples / elapsed if elapsed > 0 else 0.0}
            st["epochs"].append(summary)
            st["epoch"] = epoch + 1
            st["samples_in_epoch"] = 0
            if ml is not None:
                ml.metrics({f"epoch_{k}": summary[k] for k in (*METRICS, "samples_per_s")}, st["step"])
                ml.flush()
            if info.is_main:
                log.info("epoch %d/%d: loss %s, contrastive %s, caption %s, %.1f samples/s", epoch + 1,
                         cfg.epochs,
                         *(f"{summary[k]:.4f}" if summary[k] is not None else "n/a" for k in METRICS[:3]),
                         summary["samples_per_s"])
            self._save(run_dir, model, optimizer, scheduler, st)
        return samples_total, seconds_total

    def _finish(self, model: Any, run_dir: Path, final: Path, st: dict[str, Any], ml: _MlflowLogger | None,
                completed: bool) -> None:
        import os

        from esi.data.store import atomic_write_json
        from esi.models.checkpoint import save_checkpoint

        cfg = self.config
        tmp = final.with_name(".model.tmp.pt")
        save_checkpoint(tmp, model, pretrain={"config": cfg.to_dict(), "step": st["step"],
                                              "epoch": st["epoch"], "completed": completed,
                                              "run_dir": str(run_dir), "mlflow_run_id": st["mlflow_run_id"]})
        os.replace(tmp, final)
        atomic_write_json(run_dir / "history.json", {
            "steps": st["history"], "epochs": st["epochs"], "nonfinite_skipped": st["total_bad"],
            "completed": completed, "mlflow_run_id": st["mlflow_run_id"]})
        if st["history"]:
            plot_history(st["history"], st["epochs"], run_dir / "loss.png")
        if ml is not None:
            ml.flush()
            for name in ("model.pt", "history.json", "loss.png", "config.json"):
                if (run_dir / name).exists():
                    ml.artifact(run_dir / name)
            ml.end("FINISHED")


def pretrain(config: PretrainConfig, progress: bool = True) -> PretrainResult:
    """Pretrain ESI as configured; runs DDP when launched by torchrun (WORLD_SIZE > 1), else one process.

    Returns the run directory, the final checkpoint (RUN_DIR/model.pt), the per-step history, the MLflow run
    id (None with mlflow off) and the throughput. With ``config.resume`` it continues the latest checkpoint
    in ``config.out`` (or starts fresh when there is none).
    """
    config = config.validate()
    config.require_data()
    info = init_distributed(config.device)
    try:
        result = _Trainer(config, info, progress).run()
        # Tearing gloo down while a peer is still in a collective aborts that peer: meet first (success path
        # only; after an error the ranks have already been told, and a barrier could wait forever).
        barrier(info)
        return result
    finally:
        cleanup(info)


def checkpoints_of(run_dir: str | Path) -> list[Path]:
    """The training checkpoints a run kept (oldest first)."""
    return list_checkpoints(run_dir)
