"""Will a job's tensors fit? The bytes a list of tensors holds, and a refusal, before the job goes on, of a request
whose estimate exceeds the memory the device has free.

Example:
    >>> check_fits(10 * 2**30, torch.device("cpu"), "recording 100000 trajectories")   # doctest: +SKIP
"""

from __future__ import annotations

import os
from typing import Any, Iterable

import torch

from cadiff.errors import BadInput


def tensor_bytes(objects: Iterable[Any]) -> int:
    """The bytes of every tensor in `objects` (tensors, or dataclasses, dicts, lists and tuples holding them), each
    storage counted once."""
    seen: set[tuple[str, int]] = set()
    total = 0

    def visit(obj: Any) -> None:
        nonlocal total
        if isinstance(obj, torch.Tensor):
            key = (str(obj.device), obj.untyped_storage().data_ptr())
            if key not in seen:
                seen.add(key)
                total += obj.untyped_storage().nbytes()
        elif isinstance(obj, dict):
            for v in obj.values():
                visit(v)
        elif isinstance(obj, (list, tuple)):
            for v in obj:
                visit(v)
        elif hasattr(obj, "__dataclass_fields__"):
            for name in obj.__dataclass_fields__:
                visit(getattr(obj, name))

    for obj in objects:
        visit(obj)
    return total


def free_bytes(device: torch.device) -> int | None:
    """The memory free on `device` now (a CUDA device's free memory; on the CPU the system's available memory), or
    None where it cannot be read."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def gib(nbytes: float) -> str:
    return f"{nbytes / 2**30:.1f} GiB"


def check_fits(nbytes: float, device: torch.device, what: str, fix: str) -> None:
    """ValueError when `nbytes` more would not fit in what `device` has free (saying the estimate and `fix`)."""
    free = free_bytes(device)
    if free is not None and nbytes > free:
        raise BadInput(f"{what} would hold about {gib(nbytes)} on {device.type}, and {gib(free)} is free; {fix}")
