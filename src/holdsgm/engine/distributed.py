"""``torch.distributed`` plumbing for training launched by ``torchrun`` (no home-made launcher).

``torchrun --nproc_per_node N -m holdsgm.cli.main train CONFIG`` sets RANK, WORLD_SIZE and LOCAL_RANK;
:func:`init_distributed` then joins the process group (gloo on CPU, nccl on CUDA). Without those
variables everything runs as a single process and no collective is ever called.
"""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..errors import ConfigError


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> DistInfo:
        if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
            return cls()
        try:
            rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
            local = int(os.environ.get("LOCAL_RANK", rank))
        except ValueError:
            raise ConfigError("RANK/WORLD_SIZE/LOCAL_RANK must be integers (set by torchrun)") from None
        return cls(rank, world, local)


def resolve_device(spec: str, dist_info: DistInfo) -> torch.device:
    """'auto' -> CUDA if available else CPU; under DDP on CUDA each rank takes cuda:LOCAL_RANK."""
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(
                "config key train.device: cuda was requested but CUDA is not available "
                "(use train.device=cpu or auto)"
            )
        if dist_info.enabled and spec == "cuda":
            spec = f"cuda:{dist_info.local_rank}"
        dev = torch.device(spec)
        torch.cuda.set_device(dev)
        return dev
    return torch.device("cpu")


def init_distributed(dist_info: DistInfo, device: torch.device) -> bool:
    """Join the process group if launched by torchrun and not joined yet; True if this call joined it."""
    if not dist_info.enabled or not dist.is_available() or dist.is_initialized():
        return False
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend, rank=dist_info.rank, world_size=dist_info.world_size)
    return True


def shutdown_distributed(owned: bool) -> None:
    """Leave the process group. Callers must drop their references to the DDP model and optimizer and
    collect garbage first: under gloo, destroying the group while they are alive aborted a rank at exit
    in 7 of 10 runs on the reference machine (MACHINE.md); with ``gc.collect()`` first, 0 of 10."""
    gc.collect()
    if owned and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_max(value: float, device: torch.device) -> float:
    t = torch.tensor([float(value)], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t.item())


def all_reduce_mean(values: list[float], device: torch.device) -> list[float]:
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return (t / dist.get_world_size()).tolist()


def all_gather_object(obj):
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj, src: int = 0):
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def rng_states(dist_info: DistInfo, device: torch.device) -> dict:
    """Every rank's global torch RNG states (CPU, and CUDA on a CUDA device), gathered for rank 0's checkpoint
    (a collective under DDP)."""
    cpu = torch.get_rng_state()
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    per_rank = all_gather_object((cpu, cuda)) if dist_info.enabled else [(cpu, cuda)]
    return {"torch_cpu": [r[0] for r in per_rank], "torch_cuda": [r[1] for r in per_rank]}


def restore_rng_states(states: dict, saved_world_size: int, dist_info: DistInfo, device: torch.device) -> bool:
    """Restore this rank's states from :func:`rng_states`; False (nothing restored) when the checkpoint was
    written by another number of ranks."""
    cpu_states = states["torch_cpu"]
    if saved_world_size != dist_info.world_size or len(cpu_states) != dist_info.world_size:
        return False
    torch.set_rng_state(cpu_states[dist_info.rank])
    cuda_state = states["torch_cuda"][dist_info.rank]
    if cuda_state is not None and device.type == "cuda":
        torch.cuda.set_rng_state(cuda_state, device)
    return True
