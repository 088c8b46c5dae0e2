"""Process-group setup from the environment that torchrun and a Kubeflow PyTorchJob provide.

torchrun and the Training Operator both export RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT, so
``env://`` rendezvous serves both. Without WORLD_SIZE (or with WORLD_SIZE=1) training runs as one process and
no process group is created. NCCL is used on CUDA, gloo on CPU.
"""

from __future__ import annotations

import datetime
import logging
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from esi.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass
class DistInfo:
    """Where this process stands: rank, world size, its device and the backend (None when single)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    backend: str | None = None
    owns_group: bool = False  # True when init_distributed created the group (and cleanup destroys it)

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value in (None, ""):
        return default
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"environment variable {name}={value!r} is not an integer "
                          "(torchrun sets it)") from None


def resolve_device(preference: str = "auto", local_rank: int = 0) -> torch.device:
    """cuda:LOCAL_RANK when CUDA is there (or asked for), else cpu."""
    if preference == "cuda" or (preference == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ConfigError("device=cuda but CUDA is not available here; use --device auto or cpu")
        return torch.device("cuda", local_rank % max(1, torch.cuda.device_count()))
    return torch.device("cpu")


def init_distributed(device: str = "auto", timeout_s: float = 1800.0) -> DistInfo:
    """Join the process group described by the environment, or run single-process.

    Reuses a process group that the caller initialised already (the caller then destroys it).
    """
    world = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", rank)
    if dist.is_available() and dist.is_initialized():
        world, rank = dist.get_world_size(), dist.get_rank()
        dev = resolve_device(device, local_rank)
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        return DistInfo(rank, world, local_rank, dev, dist.get_backend(), owns_group=False)
    if world <= 1:
        return DistInfo(0, 1, 0, resolve_device(device, 0))
    missing = [v for v in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(v)]
    if missing:
        raise ConfigError(f"WORLD_SIZE={world} but {', '.join(missing)} not set; launch with torchrun "
                          "(torchrun --nproc-per-node N -m esi.cli pretrain ...) or a PyTorchJob")
    if not 0 <= rank < world:
        raise ConfigError(f"RANK={rank} is outside 0..{world - 1}")
    dev = resolve_device(device, local_rank)
    backend = "nccl" if dev.type == "cuda" else "gloo"
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    kwargs: dict[str, Any] = {}
    if backend == "nccl":
        kwargs["device_id"] = dev  # binds the communicator eagerly: first collective does not guess the GPU
    dist.init_process_group(backend=backend, init_method="env://", world_size=world, rank=rank,
                            timeout=datetime.timedelta(seconds=timeout_s), **kwargs)
    log.info("rank %d/%d joined the %s process group on %s", rank, world, backend, dev)
    return DistInfo(rank, world, local_rank, dev, backend, owns_group=True)


def cleanup(info: DistInfo) -> None:
    """Destroy the process group if this module created it."""
    if info.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    """Wait for every rank (no-op when single-process)."""
    if info.distributed:
        if info.backend == "nccl":
            dist.barrier(device_ids=[info.device.index])
        else:
            dist.barrier()


def broadcast_object(info: DistInfo, obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank."""
    if not info.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def gather_objects(info: DistInfo, obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order, on every rank."""
    if not info.distributed:
        return [obj]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def all_reduce_mean(info: DistInfo, tensor: torch.Tensor) -> torch.Tensor:
    """Mean of ``tensor`` over ranks (in place on a copy; NaN propagates, so a bad rank is seen by all)."""
    if not info.distributed:
        return tensor
    t = tensor.detach().clone()
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t / info.world_size
