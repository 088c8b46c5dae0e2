"""The state of a pretraining run that a checkpoint carries and a resume restores."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass
class TrainState:
    """Where a run stands: position in the data, what it logged so far, and its non-finite counters."""

    step: int = 0  # optimizer steps done (all epochs)
    epoch: int = 0  # the current epoch (0-based); == epochs when the run is complete
    samples_in_epoch: int = 0  # samples consumed in the current epoch, over all ranks
    history: list[dict[str, Any]] = field(default_factory=list)  # one record per optimizer step
    epochs: list[dict[str, Any]] = field(default_factory=list)  # one summary per finished epoch
    consecutive_bad: int = 0  # non-finite steps in a row (TrainingError at max_nonfinite_steps)
    total_bad: int = 0  # non-finite (skipped) steps in all
    mlflow_run_id: str | None = None
    last_saved_step: int = -1  # not saved: the step of this process's last checkpoint

    def to_dict(self) -> dict[str, Any]:
        """Plain containers for a checkpoint (without the process-local ``last_saved_step``)."""
        d = asdict(self)
        d.pop("last_saved_step")
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainState:
        known = {f.name for f in fields(cls)}
        state = cls(**{k: v for k, v in data.items() if k in known})
        state.history, state.epochs = list(state.history), list(state.epochs)
        state.last_saved_step = state.step
        return state
