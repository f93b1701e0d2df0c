"""Past one process: the ranks of torch.distributed, as `torchrun` or `accelerate launch` start them (cadiff never
launches processes itself). Work is split by the items it is made of — trajectories, rows, images — never by
rank-dependent seeds, so N processes compute what one does; sums are combined with one all-reduce (gloo on the
CPU, NCCL on GPUs). Without an initialised process group everything here is the single-process case.

Example (every rank runs the same code):
    >>> mine = shard(rows)                     # this rank's rows: rows[rank::world]   # doctest: +SKIP
    >>> all_reduce_sum(gradients)              # in place, summed over the ranks       # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import os
from typing import Iterable, Iterator, Sequence, TypeVar

import torch

T = TypeVar("T")


def rank_and_world() -> tuple[int, int]:
    """(this process's rank, the number of processes); (0, 1) without an initialised process group."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def launched_world() -> int:
    """The number of processes the launcher (torchrun, accelerate launch) started, from its environment."""
    return int(os.environ.get("WORLD_SIZE", "1"))


@contextlib.contextmanager
def process_group() -> Iterator[None]:
    """Inside: the process group the launcher describes in the environment (gloo on the CPU, NCCL on GPUs, each
    rank on its local GPU), torn down after; nothing in one process or where one is set up already."""
    import torch.distributed as dist

    if launched_world() <= 1 or dist.is_initialized():
        yield
        return
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend)
    try:
        yield
    finally:
        dist.destroy_process_group()


def is_main() -> bool:
    """Whether this process is rank 0 (the one that writes files)."""
    return rank_and_world()[0] == 0


def shard(items: Sequence[T]) -> list[T]:
    """This rank's share of `items`: every world-th item from its rank on (all of them in one process)."""
    rank, world = rank_and_world()
    return list(items[rank::world])


def all_reduce_sum(tensors: Iterable[torch.Tensor]) -> None:
    """Sum each tensor over the ranks, in place (nothing in one process)."""
    import torch.distributed as dist

    if rank_and_world()[1] == 1:
        return
    for tensor in tensors:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)


def sum_over_ranks(values: dict[int, float]) -> dict[int, float]:
    """A dict of numbers summed key by key over the ranks (every rank gives the same keys)."""
    if rank_and_world()[1] == 1:
        return dict(values)
    import torch.distributed as dist

    keys = sorted(values)
    device = f"cuda:{torch.cuda.current_device()}" if dist.get_backend() == "nccl" else "cpu"  # NCCL: GPU tensors
    total = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=device)
    all_reduce_sum([total])
    return {k: float(v) for k, v in zip(keys, total.tolist())}
