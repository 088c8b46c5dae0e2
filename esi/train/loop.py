"""The pretraining loop: one entry point for a single process and for torchrun / a PyTorchJob (DDP).

``pretrain(config)`` builds the model and the data, trains with AdamW and the warm-up/step-decay schedule
(:mod:`esi.train.step` does one optimizer step), checkpoints atomically every N steps and every epoch,
resumes exactly (same optimizer, data position and RNG states; on another number of ranks the schedule is
rebuilt in epochs), logs to MLflow (:mod:`esi.train.mlflow_logger`), and writes RUN_DIR/model.pt,
history.json and loss.png (:mod:`esi.train.plots`). Only rank 0 writes files. The step runs under
torch.compile where ``config.compile`` says so (:mod:`esi.train.compile`); per-step and per-epoch records are
kept by :mod:`esi.train.bookkeeping`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from esi.errors import ConfigError
from esi.train.bookkeeping import Run, end_epoch, record_step
from esi.train.checkpointing import (
    latest_checkpoint,
    list_checkpoints,
    rng_state,
    save_training_checkpoint,
    seed_everything,
    set_rng_state,
)
from esi.train.config import PretrainConfig
from esi.train.distributed import DistInfo, barrier, broadcast_object, cleanup, gather_objects, init_distributed
from esi.train.freeze import branches, freeze_encoder_stages, freeze_unused
from esi.train.state import TrainState
from esi.train.step import Stepper, resolve_precision

if TYPE_CHECKING:
    from torch.utils.data import DataLoader

    from esi.models.coca import EsiModel
    from esi.train.data import PretrainDataset, ResumableDistributedSampler

__all__ = ["PretrainResult", "checkpoints_of", "pretrain", "resolve_precision"]

log = logging.getLogger(__name__)


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
    compiled: bool = False  # the step ran under torch.compile (PretrainConfig.compile)
    compile_warmup_s: float = 0.0  # wall time of the first compiled step (tracing + code generation)


@dataclass
class _Resume:
    """The checkpoint a run continues from."""

    path: Path
    payload: dict[str, Any]  # the model checkpoint dict with its "training" section

    @property
    def training(self) -> dict[str, Any]:
        return self.payload["training"]


def _default_run_dir() -> Path:
    from esi.settings import get_settings

    return get_settings().runs_dir / time.strftime("pretrain-%Y%m%d-%H%M%S")


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

    def _resume_point(self, run_dir: Path) -> _Resume | None:
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

        point = _Resume(Path(path), found[1] if found else load_training_checkpoint(path))
        saved = PretrainConfig.from_dict(point.training["train_config"], source=path)
        diff = cfg.locked_differences(saved)
        if diff:
            raise ConfigError(f"cannot resume {run_dir} with other {', '.join(diff)} than the run used; pass "
                              f"the same values (see {run_dir / 'config.json'}) or start a new run with "
                              "another --out")
        st = point.training["state"]
        log.info("resuming from %s (step %d, epoch %d)", path, st["step"], st["epoch"])
        return point

    def _model(self, resumed: _Resume | None) -> EsiModel:
        """A fresh model (pretrained text weights) or the checkpoint's (nothing loaded or downloaded)."""
        from esi.models import create_model
        from esi.models.checkpoint import model_from_payload

        seed_everything(self.config.seed)  # identical initial weights on every rank (DDP also broadcasts)
        if resumed is None:
            model = create_model(self.config.model, **self.config.model_overrides)
        else:
            model = model_from_payload(resumed.payload, source=f"checkpoint {resumed.path}")
        return model.to(self.info.device)

    def _data(self, model: EsiModel, run_dir: Path) -> tuple[PretrainDataset, ResumableDistributedSampler, int]:
        from esi.train.data import PretrainDataset, ResumableDistributedSampler, load_captions

        cfg, info = self.config, self.info
        dataset = PretrainDataset(cfg.store, load_captions(cfg.captions), augment=cfg.augment, seed=cfg.seed,
                                  shuffle_pairs=cfg.shuffle_pairs, folds=cfg.folds, limit=cfg.limit,
                                  missing_captions=cfg.missing_captions, captions_path=str(cfg.captions),
                                  mix=[(m["store"], load_captions(m["captions"])) for m in cfg.mix])
        dataset.set_tokens(*self._tokens(model, dataset, run_dir))
        self._provenance = pretraining_provenance(dataset, cfg)
        sampler = ResumableDistributedSampler(
            dataset, num_replicas=info.world_size, rank=info.rank, seed=cfg.seed, batch_size=cfg.batch_size,
            lengths=dataset.caption_lengths() if cfg.length_buckets else None, bucket_batches=cfg.length_buckets)
        batches = sampler.num_samples // cfg.batch_size
        steps_per_epoch = batches // cfg.grad_accum
        if steps_per_epoch < 1:
            raise ConfigError(
                f"{len(dataset)} records give {batches} full batch(es) of {cfg.batch_size} per rank over "
                f"{info.world_size} rank(s), fewer than grad_accum={cfg.grad_accum}: lower --batch-size or "
                "--grad-accum, or use more records")
        return dataset, sampler, steps_per_epoch

    def _tokens(self, model: EsiModel, dataset: PretrainDataset, run_dir: Path
                ) -> tuple[torch.Tensor, torch.Tensor]:
        from esi.train.data import tokenize_captions

        max_length = int(self.config.text_max_length or model.max_text_len)
        cache = run_dir / "cache"
        tokens = None
        if self.info.is_main:
            tokens = tokenize_captions(model, dataset.texts, max_length, cache, progress=self.progress)
        barrier(self.info)
        if tokens is None:  # other ranks read what rank 0 wrote (or tokenise themselves if that failed)
            tokens = tokenize_captions(model, dataset.texts, max_length, cache, build=False) or \
                tokenize_captions(model, dataset.texts, max_length, None)
        return tokens

    def _loader(self, dataset: PretrainDataset, sampler: ResumableDistributedSampler, epoch: int) -> DataLoader:
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

    def _stepper(self, model: EsiModel, steps_per_epoch: int, state: TrainState, resumed: _Resume | None
                 ) -> Stepper:
        """AdamW, its schedule (positioned in epochs on resume) and the DDP wrapper, as a Stepper."""
        from esi.losses import CoCaLoss
        from esi.train.schedule import build_optimizer, build_scheduler, seek

        cfg, info = self.config, self.info
        optimizer = build_optimizer(model, cfg.lr, cfg.weight_decay, tuple(cfg.betas), cfg.eps)
        if resumed is not None:
            optimizer.load_state_dict(resumed.training["optimizer"])
        scheduler = build_scheduler(optimizer, steps_per_epoch, cfg.warmup_epochs, cfg.decay_every,
                                    cfg.decay_factor)
        global_batch = cfg.batch_size * info.world_size * cfg.grad_accum
        seek(scheduler, state.epoch * steps_per_epoch + state.samples_in_epoch // global_batch)
        wrapped: nn.Module = model
        if info.distributed:
            from torch.nn.parallel import DistributedDataParallel as DDP

            wrapped = DDP(model, device_ids=[info.device.index] if info.device.type == "cuda" else None)
        return Stepper(wrapped, model, CoCaLoss(cfg.lambda_con, cfg.lambda_cap), optimizer, scheduler, info,
                       grad_accum=cfg.grad_accum, grad_clip=cfg.grad_clip,
                       autocast_dtype=resolve_precision(cfg.precision, info.device), branches=branches(cfg))

    def _restore(self, resumed: _Resume | None, steps_per_epoch: int) -> TrainState:
        """The TrainState to start from; RNG streams restored (or re-seeded on another number of ranks)."""
        info = self.info
        seed_everything(self.config.seed + 1 + info.rank)  # per-rank stream for dropout and the like
        if resumed is None:
            return TrainState()
        state = TrainState.from_dict(resumed.training["state"])
        saved_world = int(resumed.training.get("world_size", 1))
        rngs = resumed.training["rng"]
        if saved_world == info.world_size and len(rngs) == info.world_size:
            set_rng_state(rngs[info.rank])
        else:
            log.warning("resuming a %d-rank run on %d rank(s): %d step(s) per epoch now; the lr schedule is "
                        "rebuilt in epochs (warm-up %s, decay every %s) and the RNG streams are re-seeded",
                        saved_world, info.world_size, steps_per_epoch, self.config.warmup_epochs,
                        self.config.decay_every)
        return state

    def _compile(self, run: Run) -> None:
        """torch.compile the step when ``config.compile`` asks for it (auto: where it pays back)."""
        from esi.train.compile import compile_model, should_compile

        cfg = self.config
        total = cfg.epochs * run.steps_per_epoch
        remaining = max(0, (total if cfg.max_steps is None else min(total, cfg.max_steps)) - run.state.step)
        on, why = should_compile(cfg.compile, device=self.info.device, total_steps=remaining)
        if on and remaining:
            run.compiled = compile_model(run.model)
            run.warmup_pending = True
            log.info("%s: compiling %s (the first step is the warm-up)", why, ", ".join(run.compiled.names))
        else:
            log.info("%s: eager step", why)

    def _mlflow(self, run: Run, n_params: int) -> None:
        from esi.train.mlflow_logger import MlflowLogger, flatten

        cfg, info, st = self.config, self.info, run.state
        error = None
        if info.is_main and cfg.mlflow:
            try:
                run.ml = MlflowLogger(cfg.experiment, cfg.run_name or run.run_dir.name, st.mlflow_run_id)
            except Exception as exc:  # tell the other ranks instead of leaving them waiting in a collective
                error = f"{type(exc).__name__}: {exc}"
        error = broadcast_object(info, error)
        if error:
            from esi.settings import get_settings

            raise ConfigError(f"MLflow tracking at {get_settings().tracking_uri} failed ({error}); fix "
                              "MLFLOW_TRACKING_URI or pass --no-mlflow")
        if run.ml is not None:
            st.mlflow_run_id = run.ml.run_id
            if run.ml.new:
                ds = run.dataset
                run.ml.log_params({**flatten(cfg.to_dict()), "out": str(run.run_dir),
                                   "world_size": info.world_size, "n_params": n_params, "n_records": len(ds),
                                   "n_quarantined_excluded": ds.n_quarantined,
                                   "n_missing_captions": ds.n_missing_captions, "n_misaligned": ds.n_misaligned,
                                   "steps_per_epoch": run.steps_per_epoch, "device": str(info.device),
                                   "autocast": str(run.stepper.autocast_dtype),
                                   "compiled": run.compiled is not None})
        st.mlflow_run_id = broadcast_object(info, st.mlflow_run_id)

    # checkpoint -------------------------------------------------------------------------------------------
    def _extra(self, st: TrainState, run_dir: Path, completed: bool) -> dict[str, Any]:
        return {"pretrain": {"config": self.config.to_dict(), "step": st.step, "epoch": st.epoch,
                             "completed": completed, "run_dir": str(run_dir), "mlflow_run_id": st.mlflow_run_id},
                "provenance": getattr(self, "_provenance", None) or {}}

    def _save(self, run: Run) -> None:
        rngs = gather_objects(self.info, rng_state())  # collective: every rank calls it
        if not self.info.is_main:
            return
        st, stepper = run.state, run.stepper
        training = {"state": st.to_dict(), "train_config": self.config.to_dict(),
                    "optimizer": stepper.optimizer.state_dict(), "scheduler": stepper.scheduler.state_dict(),
                    "rng": rngs, "world_size": self.info.world_size, "saved": time.strftime("%Y-%m-%dT%H:%M:%S")}
        path = save_training_checkpoint(run.run_dir, run.model, training, self._extra(st, run.run_dir, False),
                                        keep=self.config.keep_checkpoints)
        st.last_saved_step = st.step
        log.debug("checkpoint %s", path)

    # main -------------------------------------------------------------------------------------------------
    def run(self) -> PretrainResult:
        cfg, info = self.config, self.info
        run_dir = self._run_dir()
        resumed = self._resume_point(run_dir)
        if info.is_main:
            cfg.replace(out=str(run_dir), resume=False).to_json(run_dir / "config.json")
        model = self._model(resumed)
        if cfg.freeze_ecg_stages:  # before the optimizer and DDP see the parameters
            freeze_encoder_stages(model, cfg.freeze_ecg_stages)
        n_params = sum(p.numel() for p in model.parameters())
        dataset, sampler, steps_per_epoch = self._data(model, run_dir)
        if cfg.lambda_con == 0 or cfg.lambda_cap == 0:
            freeze_unused(model, dataset, cfg)
        state = self._restore(resumed, steps_per_epoch)
        run = Run(run_dir, model, dataset, sampler, steps_per_epoch,
                   self._stepper(model, steps_per_epoch, state, resumed), state)
        self._compile(run)
        self._mlflow(run, n_params)
        log.info("pretraining %s (%.1fM params) on %d records, %d step(s)/epoch x %d epochs, %d rank(s), %s",
                 cfg.model, n_params / 1e6, len(dataset), steps_per_epoch, cfg.epochs, info.world_size,
                 info.device)
        try:
            self._train(run)
        except BaseException as exc:
            if run.ml is not None:
                run.ml.end("KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED")
            raise
        finally:
            if run.compiled is not None:
                run.compiled.remove()  # the returned and saved model is the plain eager one
        completed = state.epoch >= cfg.epochs
        final = run_dir / "model.pt"
        if info.is_main:
            self._finish(run, final, completed)
        barrier(info)
        return PretrainResult(run_dir=run_dir, final_checkpoint=final, history=state.history,
                              mlflow_run_id=state.mlflow_run_id,
                              samples_per_s=run.samples / run.seconds if run.seconds else 0.0,
                              epochs=state.epochs, steps=state.step, completed=completed,
                              compiled=run.compiled is not None, compile_warmup_s=run.warmup_s)

    def _train(self, run: Run) -> None:
        cfg, st = self.config, run.state
        while st.epoch < cfg.epochs and (cfg.max_steps is None or st.step < cfg.max_steps):
            epoch = st.epoch
            finished = self._epoch(run)
            if not finished:
                if st.last_saved_step != st.step:
                    self._save(run)
                log.info("stopped at max_steps=%d (epoch %d, step %d)", cfg.max_steps, epoch + 1, st.step)
                return
            end_epoch(run, epoch, cfg, self.info.is_main)
            self._save(run)

    def _epoch(self, run: Run) -> bool:
        """Train the rest of the current epoch; False when max_steps stopped it part-way."""
        from tqdm import tqdm

        cfg, st, info = self.config, run.state, self.info
        global_batch = cfg.batch_size * info.world_size
        # Position inside the epoch, in whole optimizer steps, from the global samples consumed (works when
        # the number of ranks changed between the interruption and the resume).
        done_micro = (st.samples_in_epoch // global_batch) // cfg.grad_accum * cfg.grad_accum
        run.dataset.set_epoch(st.epoch)
        run.sampler.set_epoch(st.epoch)
        run.sampler.set_start(done_micro * cfg.batch_size)
        batches = iter(self._loader(run.dataset, run.sampler, st.epoch))
        run.stepper.model.train()
        run.epoch_samples, run.epoch_seconds = 0, 0.0
        first = done_micro // cfg.grad_accum
        bar = tqdm(total=run.steps_per_epoch, initial=first, disable=not self.progress,
                   desc=f"epoch {st.epoch + 1}/{cfg.epochs}", unit="step", dynamic_ncols=True)
        try:
            for done in range(first + 1, run.steps_per_epoch + 1):
                t0 = time.perf_counter()
                result = run.stepper.run(batches)
                st.samples_in_epoch = done * cfg.grad_accum * global_batch
                rec = record_step(run, result, time.perf_counter() - t0, cfg, info.world_size)
                bar.update(1)
                bar.set_postfix(loss=f"{rec['loss']:.4f}" if rec["loss"] is not None else "nan",
                                lr=f"{result.lr:.2e}", sps=f"{rec['samples_per_s']:.1f}")
                if cfg.checkpoint_every_steps and st.step % cfg.checkpoint_every_steps == 0:
                    self._save(run)
                if cfg.max_steps is not None and st.step >= cfg.max_steps and done < run.steps_per_epoch:
                    return False
        finally:
            bar.close()
        return True

    def _finish(self, run: Run, final: Path, completed: bool) -> None:
        from esi.data.store import atomic_write_json
        from esi.models.checkpoint import save_checkpoint
        from esi.train.plots import plot_history

        st, run_dir = run.state, run.run_dir
        save_checkpoint(final, run.model, **self._extra(st, run_dir, completed))
        atomic_write_json(run_dir / "history.json", {
            "steps": st.history, "epochs": st.epochs, "nonfinite_skipped": st.total_bad,
            "completed": completed, "mlflow_run_id": st.mlflow_run_id,
            "compiled": run.compiled is not None, "compile_warmup_s": run.warmup_s})
        if st.history:
            plot_history(st.history, st.epochs, run_dir / "loss.png")
        if run.ml is not None:
            run.ml.flush()
            for name in ("model.pt", "history.json", "loss.png", "config.json"):
                if (run_dir / name).exists():
                    run.ml.artifact(run_dir / name)
            run.ml.end("FINISHED")


def pretraining_provenance(dataset: PretrainDataset, cfg: PretrainConfig) -> dict[str, Any]:
    """Exactly which records the model is pretrained on (after folds, limit, quarantine and missing captions),
    so an evaluation can refuse a test split that overlaps them; the store digest says which store it was."""
    from esi.evaluation.provenance import store_digest

    return {"store": str(cfg.store), "store_digest": store_digest(dataset.base.store), "folds": cfg.folds,
            "mix": [m["store"] for m in cfg.mix], "n_records": len(dataset.record_ids),
            "record_ids": list(dataset.record_ids)}


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
