"""``torch.compile`` of the model's training step, as an option of the trainer (``PretrainConfig.compile``).

What is compiled, in place on the model (the state dict, the checkpoint format and every caller stay the same;
:meth:`CompiledModel.remove` puts the eager methods back):

- the ECG encoder's ``forward_features``: the bulk of the step's elementwise work (depthwise convolution,
  LayerNorm, GELU, GRN, DropPath, residual adds), one graph with static shapes (batch x leads x samples is
  fixed in training: ``drop_last`` batches, fixed-length records);
- the caption decoder's ``hidden`` (token embedding, causal self-attention, cross-attention, MLP): one graph,
  dynamic in the number of rows and in the caption length (batches are trimmed to their longest caption, and
  :func:`esi.models.layers.length_groups` splits rows in two groups), so a new length does not recompile.

The text tower (a Hugging Face encoder) stays eager: its attention-mask preparation is Python-heavy and the
model's length grouping calls it with many shapes. The first step of a compiled run is the warm-up (tracing and
code generation: minutes on 2 CPU cores, much less when the inductor cache already holds the graphs); the
trainer reports it apart from the throughput. ``auto`` compiles only runs long enough to pay it back (see
:func:`should_compile` and docs/model.md).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from esi.errors import ConfigError
from esi.train.config import COMPILE_MODES

if TYPE_CHECKING:
    from esi.models.coca import EsiModel

log = logging.getLogger(__name__)

__all__ = ["COMPILE_MODES", "CompiledModel", "available", "compile_model", "should_compile"]


@dataclass
class CompiledModel:
    """The compiled methods :func:`compile_model` put on a model; ``remove``/``install`` switch them off/on.

    They are instance attributes shadowing the class's methods, so removing them restores the eager model
    exactly (nothing in the state dict changes), and installing them again reuses the compiled code.
    """

    methods: list[tuple[Any, str, Any]] = field(default_factory=list)  # (module, method name, compiled)
    installed: bool = False

    def install(self) -> None:
        for module, name, fn in self.methods:
            setattr(module, name, fn)
        self.installed = True

    def remove(self) -> None:
        for module, name, _ in self.methods:
            module.__dict__.pop(name, None)
        self.installed = False

    @property
    def names(self) -> list[str]:
        return [f"{type(module).__name__}.{name}" for module, name, _ in self.methods]


class _AnyRows:
    """Calls a compiled decoder with its row count marked unbacked: a length group of one row would otherwise
    be a specialised shape, i.e. another compilation of minutes. (The caption length stays a backed dynamic
    size: attention needs it; a one-token caption group is rare.)"""

    def __init__(self, fn: Any) -> None:
        self.fn = fn

    def __call__(self, input_ids: torch.Tensor, ecg_tokens: torch.Tensor) -> torch.Tensor:
        torch._dynamo.decorators.mark_unbacked(input_ids, 0)
        torch._dynamo.decorators.mark_unbacked(ecg_tokens, 0)
        return self.fn(input_ids, ecg_tokens)


def available() -> tuple[bool, str]:
    """(True, "") when torch.compile can run here, else (False, why)."""
    try:
        import torch._dynamo
        import torch._inductor  # noqa: F401
    except Exception as exc:  # a torch build without inductor
        return False, f"torch.compile is unavailable in this torch build ({exc})"
    if not torch._dynamo.is_dynamo_supported():
        return False, "torch.compile does not support this Python version"
    return True, ""


def compile_model(model: EsiModel) -> CompiledModel:
    """Compile the encoder's ``forward_features`` (static shapes) and the decoder's ``hidden`` (dynamic rows
    and length) in place; returns the installed handle. Compilation itself happens on the first call."""
    ok, why = available()
    if not ok:
        raise ConfigError(f"compile=on: {why}; use compile=off")
    handle = CompiledModel()
    encoder, decoder = model.ecg_encoder, model.decoder
    if getattr(encoder, "grad_checkpointing", False):
        log.info("compile: the ECG encoder uses gradient checkpointing; it stays eager")
    else:
        handle.methods.append((encoder, "forward_features",
                               torch.compile(encoder.forward_features, fullgraph=True, dynamic=False)))
    handle.methods.append((decoder, "hidden", _AnyRows(torch.compile(decoder.hidden, fullgraph=True,
                                                                      dynamic=True))))
    handle.install()
    return handle


def should_compile(mode: str, *, device: torch.device, total_steps: int, min_steps: int = 200
                   ) -> tuple[bool, str]:
    """Whether to compile under ``mode`` (on | off | auto), with the reason (logged).

    ``auto`` compiles runs with at least ``min_steps`` optimizer steps still to go. Measured on 2 CPU cores
    (docs/model.md): a cold warm-up (tracing and code generation) took 105 s for esi_cpu and 284 s for esi_tiny
    (12-32 s with a warm inductor cache); the compiled esi_tiny step was 1.11x the eager trainer step (1.46x the
    pre-issue-15 baseline), repaid after ~24 steps with a warm cache; esi_cpu at make run's settings gained ~1%
    (repaid only after ~900 steps), so ``make run``'s 90 steps stay eager. The policy does not look at the model:
    an esi_cpu run of 200+ steps is compiled for little gain (pass ``compile="off"``).
    """
    if mode not in COMPILE_MODES:
        raise ConfigError(f"compile={mode!r}: expected one of {', '.join(COMPILE_MODES)}")
    if mode == "off":
        return False, "compile=off"
    ok, why = available()
    if mode == "on":
        if not ok:
            raise ConfigError(f"compile=on: {why}; use compile=off")
        return True, "compile=on"
    if not ok:
        return False, f"compile=auto: {why}"
    if total_steps >= min_steps:
        return True, f"compile=auto: {total_steps} steps on {device.type} (>= {min_steps}) repay the warm-up"
    return False, f"compile=auto: {total_steps} steps on {device.type} (< {min_steps}) would not repay the warm-up"
