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
from typing import Callable, Iterable, Iterator, Sequence, TypeVar

import torch

from cadiff.errors import CadiffError

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


def local_device(device: str) -> str:
    """The device this rank works on: with several processes, 'cuda' means this rank's own GPU (LOCAL_RANK)."""
    if launched_world() > 1 and device == "cuda":
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return device


@contextlib.contextmanager
def process_group(device: str = "cpu") -> Iterator[None]:
    """Inside: the process group the launcher describes in the environment (NCCL when the model is on a GPU, each
    rank on its local one; gloo on the CPU), torn down after; nothing in one process or where one is set up."""
    import torch.distributed as dist

    if launched_world() <= 1 or dist.is_initialized():
        yield
        return
    backend = "nccl" if str(device).startswith("cuda") else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(torch.device(local_device(str(device))))
    dist.init_process_group(backend)
    try:
        yield
        dist.barrier()  # every rank done before any closes its connections
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
    keys = sorted(values)
    total = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=_device())
    all_reduce_sum([total])
    return {k: float(v) for k, v in zip(keys, total.tolist())}


class OtherRankFailed(CadiffError):
    """Another process of this multi-process run failed (its own error is in its output); this one stops too."""


def _device() -> str:
    import torch.distributed as dist

    return f"cuda:{torch.cuda.current_device()}" if dist.get_backend() == "nccl" else "cpu"  # NCCL: GPU tensors


def stop_together(error: BaseException | None) -> None:
    """Every rank calls this at the same point: if any failed, all stop (the failing one with its own error)."""
    flag = torch.tensor([0.0 if error is None else 1.0], device=_device())
    all_reduce_sum([flag])
    if error is not None:
        raise error
    if float(flag) > 0:
        raise OtherRankFailed("another process of this run failed (its error is in its output); stopping this one")


def together(work: Callable[[], T]) -> T:
    """`work()` on this rank; if it fails on any rank, every rank stops (the failing one with its own error)
    instead of waiting for the others forever. In one process, just `work()`."""
    if rank_and_world()[1] == 1:
        return work()
    try:
        result = work()
    except Exception as exc:  # noqa: BLE001  (re-raised by stop_together)
        stop_together(exc)
    stop_together(None)
    return result


def gather_rows(mine: torch.Tensor, total: int) -> torch.Tensor:
    """The rows of all ranks back in their order, from each rank's `shard` of `total` rows (this rank's `mine`,
    every rank's rows shaped alike)."""
    import torch.distributed as dist

    rank, world = rank_and_world()
    size = -(-total // world)
    padded = torch.zeros((size, *mine.shape[1:]), dtype=mine.dtype, device=_device())
    padded[: len(mine)] = mine.to(padded.device)
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded)
    out = torch.empty((total, *mine.shape[1:]), dtype=mine.dtype)
    for r, part in enumerate(parts):
        count = len(range(r, total, world))
        out[r::world] = part[:count].cpu()
    return out


def from_rank0(values: list[int] | None) -> list[int]:
    """Rank 0's list of whole numbers, on every rank (rank 0 passes it, the others None). Rank 0 passing None says it
    failed: it gets [] back (and raises its own error), every other rank stops with OtherRankFailed."""
    import torch.distributed as dist

    device = _device()
    main = is_main()
    data = torch.tensor([-1] if values is None else [len(values), *values], dtype=torch.int64, device=device)
    size = torch.tensor([len(data)], dtype=torch.int64, device=device)
    dist.broadcast(size, 0)
    if not main:
        data = torch.empty(int(size), dtype=torch.int64, device=device)
    dist.broadcast(data, 0)
    if int(data[0]) < 0:
        if main:
            return []
        raise OtherRankFailed("another process of this run failed (its error is in its output); stopping this one")
    return [int(v) for v in data[1:].tolist()]


@contextlib.contextmanager
def leading() -> Iterator[Callable[[list[int]], None]]:
    """Rank 0's side of work it leads while the other ranks follow (`from_rank0(None)`): yields `tell(items)`,
    which gives them the items to do (nothing in one process). A block that fails before telling them tells them to
    stop instead, so no rank waits for ever."""
    several = rank_and_world()[1] > 1
    told: list[bool] = []

    def tell(items: list[int]) -> None:
        if several:
            from_rank0(items)
            told.append(True)

    try:
        yield tell
    except BaseException:
        if several and not told:
            from_rank0(None)
        raise
