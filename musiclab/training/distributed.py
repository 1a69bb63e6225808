"""Training at scale: torchrun + PyTorch DistributedDataParallel, and the rank-sharded window sampler.

``torchrun --nproc_per_node N -m musiclab train ...`` starts N processes and sets ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; ``init_distributed`` reads
them and joins the process group (NCCL on GPUs, one GPU per local rank; gloo on CPU). Without
``WORLD_SIZE`` (a plain ``python -m musiclab train``) nothing here talks to anyone, and training
is exactly the single-process run.

Data sharding: every rank draws the same *global* batch of window positions from the same
seeded stream (``dataset.window_positions`` reads only the files' lengths), then cuts just its
own contiguous slice of ``batch_size / world_size`` windows from the memory-mapped corpus. DDP
averages the gradients over ranks, so one step on N ranks is one step on the whole global batch,
and a checkpoint (written by rank 0 only) holds global state alone: it resumes under any world
size on the same batch stream.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import torch
import torch.distributed as dist

from ..settings import current
from .dataset import window_positions


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0  # global rank, 0 .. world_size - 1; rank 0 writes checkpoints, curves and the card
    world_size: int = 1  # processes in the job (GPUs, or CPU processes with gloo)
    local_rank: int = 0  # rank within this node: picks the GPU
    device: torch.device = torch.device("cpu")  # where this rank's model lives

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(default_device: torch.device | None = None) -> DistInfo:
    """Join the torchrun process group if ``WORLD_SIZE`` > 1, else return a single-process DistInfo.

    The backend is NCCL when CUDA is available, gloo otherwise (``MUSICLAB_DIST_BACKEND``
    overrides). Collectives time out after ``MUSICLAB_DIST_TIMEOUT`` minutes (default 120): the
    first run on a large folder tokenizes it on local rank 0 while the other ranks wait."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo(device=default_device or torch.device("cpu"))
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        if local >= torch.cuda.device_count():
            raise ValueError(
                f"LOCAL_RANK {local} needs a GPU per process: expected --nproc_per_node <= "
                f"{torch.cuda.device_count()} (GPUs on this node), got at least {local + 1}"
            )
        device, backend = torch.device("cuda", local), "nccl"
        torch.cuda.set_device(device)
    else:
        device, backend = torch.device("cpu"), "gloo"
    backend = current().dist_backend or backend
    if not dist.is_initialized():
        minutes = current().dist_timeout
        dist.init_process_group(backend, rank=rank, world_size=world, timeout=timedelta(minutes=minutes))
    return DistInfo(rank, world, local, device)


def cleanup() -> None:
    """Leave the process group (a no-op in a single-process run)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def exit_worker() -> None:
    """End a torchrun worker at once after a clean run whose files are all written.

    With torch 2.13 on CPU, gloo sometimes aborts in interpreter teardown *after* a clean
    ``destroy_process_group`` ("terminate called without an active exception", SIGABRT), and
    torchrun then reports the whole job as failed: 4 of 34 two-rank runs here, 0 of 30 with
    this early exit. Skipping teardown avoids it; output streams are flushed first. A no-op without
    ``WORLD_SIZE`` > 1, so single-process runs end as usual."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier(device_ids=[info.local_rank] if info.device.type == "cuda" else None)


def broadcast(obj, info: DistInfo):
    """Rank 0's ``obj`` (any picklable value) on every rank: rank 0 decides, all follow."""
    if not info.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0, device=info.device if info.device.type == "cuda" else None)
    return box[0]


def mean_over_ranks(value: float, info: DistInfo) -> float:
    """The mean of a float over all ranks (e.g. each rank's mean training loss)."""
    if not info.enabled:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=info.device)
    dist.all_reduce(t)
    return t.item() / info.world_size


def wrap_ddp(model: torch.nn.Module, info: DistInfo) -> torch.nn.Module:
    """``model`` wrapped in DistributedDataParallel (rank 0's weights are broadcast to all
    ranks here), or ``model`` itself in a single-process run. Train through the wrapper;
    save, evaluate and decode with the plain module."""
    if not info.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [info.local_rank] if info.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


class ShardedWindowSampler:
    """Window positions for one rank: its slice of a global batch drawn identically on all ranks.

    ``lengths``: tokens (or frames) per training file. ``global_batch``: windows per optimiser
    step summed over ranks; it must divide by ``world_size``. With ``world_size`` 1 the stream is
    exactly ``dataset.sample_windows``' (same seed, same windows, same order)."""

    def __init__(self, lengths, global_batch: int, rank: int = 0, world_size: int = 1):
        if global_batch % world_size:
            raise ValueError(
                f"batch_size is the global batch and must divide by the world size: expected a multiple "
                f"of {world_size}, got {global_batch} (try --batch-size {global_batch // world_size * world_size or world_size})"
            )
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.global_batch, self.rank, self.world_size = global_batch, rank, world_size
        self.local_batch = global_batch // world_size

    def epoch(self, seed: int, steps: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``steps`` batches of (file index, target position), (local_batch,) int arrays each,
        from the stream ``np.random.default_rng(seed)`` (train.py uses seed + epoch)."""
        rng = np.random.default_rng(seed)
        mine = slice(self.rank * self.local_batch, (self.rank + 1) * self.local_batch)
        for _ in range(steps):
            file_idx, ends = window_positions(self.lengths, self.global_batch, rng)
            yield file_idx[mine], ends[mine]
