"""What a training invocation keeps track of between steps: the :class:`Run` (model, data, stepper, state,
MLflow logger, throughput counters, the compiled warm-up), and how a step or an epoch is recorded in the
history, logged and checked (too many non-finite steps stop the run)."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from esi.errors import TrainingError
from esi.train.state import TrainState
from esi.train.step import METRICS, Stepper, StepResult

if TYPE_CHECKING:
    from esi.models.coca import EsiModel
    from esi.train.compile import CompiledModel
    from esi.train.config import PretrainConfig
    from esi.train.data import PretrainDataset, ResumableDistributedSampler
    from esi.train.mlflow_logger import MlflowLogger

log = logging.getLogger(__name__)


@dataclass
class Run:
    """Everything one training invocation works with."""

    run_dir: Path
    model: EsiModel
    dataset: PretrainDataset
    sampler: ResumableDistributedSampler
    steps_per_epoch: int
    stepper: Stepper
    state: TrainState
    ml: MlflowLogger | None = None
    samples: int = 0  # trained in this invocation (all ranks), compiled warm-up excluded
    seconds: float = 0.0
    epoch_samples: int = 0  # trained in the current epoch by this invocation
    epoch_seconds: float = 0.0
    compiled: CompiledModel | None = None  # torch.compile'd methods, removed when the run ends
    warmup_pending: bool = False  # the next step is the compiled warm-up (left out of the throughput)
    warmup_s: float = 0.0


def finite(x: float) -> float | None:
    """``x``, or None when it is NaN or infinite (JSON and MLflow take no NaN)."""
    return float(x) if math.isfinite(x) else None


def _count_time(run: Run, step_samples: int, seconds: float) -> bool:
    """Add the step to the throughput counters; True when it was the compiled warm-up (kept out of them)."""
    warmup, run.warmup_pending = run.warmup_pending, False
    if warmup:  # compilation time is not training throughput: reported on its own
        run.warmup_s = seconds
        log.info("step %d: compiled warm-up took %.1f s", run.state.step, seconds)
        return True
    run.samples += step_samples
    run.seconds += seconds
    run.epoch_samples += step_samples
    run.epoch_seconds += seconds
    return False


def record_step(run: Run, result: StepResult, seconds: float, cfg: PretrainConfig, world_size: int
                ) -> dict[str, Any]:
    """Count the step, append it to the history, log it, and stop on too many non-finite steps."""
    st = run.state
    st.step += 1
    if result.finite:
        st.consecutive_bad = 0
    else:
        st.consecutive_bad += 1
        st.total_bad += 1
        log.warning("step %d: non-finite loss/gradient (loss %s, grad norm %s): update skipped (%d in a "
                    "row)", st.step, result.values["loss"], result.grad_norm, st.consecutive_bad)
    step_samples = cfg.grad_accum * cfg.batch_size * world_size
    warmup = _count_time(run, step_samples, seconds)
    rec = {"step": st.step, "epoch": st.epoch, **{k: finite(v) for k, v in result.values.items()},
           "lr": result.lr, "logit_scale": finite(result.logit_scale), "grad_norm": finite(result.grad_norm),
           "samples_per_s": step_samples / max(seconds, 1e-9), "skipped": not result.finite}
    if warmup:
        rec["compile_warmup"] = True
    st.history.append(rec)
    if st.consecutive_bad >= cfg.max_nonfinite_steps:
        raise TrainingError(
            f"{st.consecutive_bad} consecutive steps had a non-finite loss or gradient (step {st.step}); "
            "lower --lr, use --precision fp32, check the data for NaNs ('esi validate') or resume from an "
            f"earlier checkpoint in {run.run_dir / 'checkpoints'}")
    if run.ml is not None:
        run.ml.metrics({k: rec[k] for k in (*METRICS, "lr", "logit_scale", "grad_norm", "samples_per_s")},
                       st.step)
        if st.step % cfg.log_every_steps == 0:
            run.ml.flush()
    return rec


def end_epoch(run: Run, epoch: int, cfg: PretrainConfig, is_main: bool) -> None:
    """Summarise the finished epoch (mean metrics of its updated steps, lr, seconds, samples/s) and move on."""
    st = run.state
    ep_hist = [h for h in st.history if h["epoch"] == epoch and not h["skipped"]]
    seconds, samples = run.epoch_seconds, run.epoch_samples
    summary = {"epoch": epoch, "last_step": st.step,
               **{k: sum(h[k] for h in ep_hist) / len(ep_hist) if ep_hist else None for k in METRICS},
               "lr": st.history[-1]["lr"] if st.history else None,
               "seconds": seconds, "samples_per_s": samples / seconds if seconds > 0 else 0.0}
    st.epochs.append(summary)
    st.epoch, st.samples_in_epoch = epoch + 1, 0
    if run.ml is not None:
        run.ml.metrics({f"epoch_{k}": summary[k] for k in (*METRICS, "samples_per_s")}, st.step)
        run.ml.flush()
    if is_main:
        log.info("epoch %d/%d: loss %s, contrastive %s, caption %s, %.1f samples/s", epoch + 1, cfg.epochs,
                 *(f"{summary[k]:.4f}" if summary[k] is not None else "n/a" for k in METRICS[:3]),
                 summary["samples_per_s"])
