"""One forward + backward per objective term batch; gradients of the selected weights summed in fp32 per group.

Only the selected parameters get `requires_grad` (so no gradient exists for the others), and each gradient is
folded into its fp32 accumulator the moment autograd produces it (post-accumulate hook), then dropped: the
model's own dtype (fp16/bf16) never limits the precision of the sum.

Example:
    >>> grads, values = accumulate(pipe.unet, params, steps, weights={0: 0.25}, sign=1.0)   # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator

import torch

from cadiff.adapters import adapter_for
from cadiff.errors import BadInput
from cadiff.attribution.estimators import Step
from cadiff.models.sharding import local
from cadiff.models.trace import kwargs_rows, take_rows


@contextlib.contextmanager
def only_these_require_grad(module: torch.nn.Module, params: dict[str, torch.nn.Parameter]) -> Iterator[None]:
    """Inside: exactly `params` (by name) require grad; the previous flags come back on exit (by name: a sharded
    module registers other parameter objects while it runs)."""
    flags = {n: p.requires_grad for n, p in module.named_parameters()}
    try:
        for n, p in module.named_parameters():
            p.requires_grad_(n in params)
        yield
    finally:
        for n, p in module.named_parameters():
            p.requires_grad_(flags[n])


def check_checkpointing(module: torch.nn.Module) -> None:
    """BadInput unless diffusers' gradient checkpointing of this denoiser computes what its plain forward does."""
    if not getattr(module, "_supports_gradient_checkpointing", False):
        raise BadInput(f"{type(module).__name__} does not support gradient checkpointing; attribute without it")
    why = adapter_for(module).checkpointing_differs
    if why:
        raise BadInput(f"gradient checkpointing would change {type(module).__name__}'s scores ({why}); attribute "
                       "without it")


@contextlib.contextmanager
def checkpointed(module: torch.nn.Module, on: bool) -> Iterator[None]:
    """Inside, with `on`: the denoiser recomputes its blocks' activations in the backward pass (diffusers' gradient
    checkpointing, switched off again after). BadInput where the model cannot, or where its family's checkpointed
    forward is not the same computation."""
    if not on:
        yield
        return
    check_checkpointing(module)
    was = bool(getattr(module, "gradient_checkpointing", False))
    module.enable_gradient_checkpointing()
    try:
        yield
    finally:
        if not was:
            module.disable_gradient_checkpointing()


def _runs(groups: list[int]) -> list[tuple[int, slice]]:
    """Contiguous runs of equal group ids: [(group, rows)]."""
    runs, start = [], 0
    for i in range(1, len(groups) + 1):
        if i == len(groups) or groups[i] != groups[start]:
            runs.append((groups[start], slice(start, i)))
            start = i
    return runs


def _passes(step: Step, weights: dict[int, float], lockstep: bool) -> list[tuple[int, slice, float]]:
    """A step's forward/backward passes: (group, rows, factor), one per run of rows of a group in `weights`. In
    `lockstep` (a sharded denoiser, where every rank must make the same calls) one per group in `weights`, in order,
    whether this rank holds rows of it or not: a group it has none of gets a pass on one row that counts nothing."""
    runs = [(group, rows) for group, rows in _runs(step.groups) if group in weights]
    if not lockstep:
        return [(group, rows, 1.0) for group, rows in runs]
    mine = dict(runs)
    if len(mine) != len(runs):
        raise RuntimeError("a step's rows of one group are not contiguous; lockstep passes need them so")
    return [(group, mine.get(group, slice(0, 1)), 1.0 if group in mine else 0.0) for group in sorted(weights)]


def accumulate(denoiser: torch.nn.Module, params: dict[str, torch.nn.Parameter], steps: list[Step],
               weights: dict[int, float], sign: float = 1.0, tick: Callable[[int], None] | None = None,
               on: str | None = None, lockstep: bool = False
               ) -> tuple[dict[int, dict[str, torch.Tensor]], dict[int, float]]:
    """Per group g: fp32 gradients of J_g = sign * sum_rows weights[g] * ||scale (out - target)||^2, and J_g.

    Rows of groups missing from `weights` are skipped (no forward), so groups can be taken one call at a time.
    The sums live on device `on` (None: each weight's own). A sharded denoiser's sums are this rank's parts of
    them, summed over the ranks as they arrive; it needs `lockstep` (`_passes`)."""
    grads: dict[int, dict[str, torch.Tensor]] = {
        g: {n: torch.zeros(local(p).shape, dtype=torch.float32, device=on or local(p).device)
            for n, p in params.items()} for g in weights}
    values = {g: 0.0 for g in weights}
    current: dict[str, dict[str, torch.Tensor]] = {}

    def fold(name):
        def hook(p):
            total = current["acc"][name]
            total.add_(local(p.grad).to(total.device, torch.float32))
            p.grad = None
        return hook

    handles = []
    adapter = adapter_for(denoiser)
    with only_these_require_grad(denoiser, params):
        try:
            for name, p in params.items():
                p.grad = None
                handles.append(p.register_post_accumulate_grad_hook(fold(name)))
            for step in steps:
                n = step.sample.shape[0]
                for group, rows, factor in _passes(step, weights, lockstep):
                    current["acc"] = grads[group]
                    with torch.enable_grad():
                        out = adapter.forward(denoiser, step.sample[rows], take_rows(step.timestep, rows, n),
                                              kwargs_rows(step.kwargs, rows, n, adapter.unbatched()))
                        diff = (out.float() - step.target[rows].float()) * step.scale[rows].to(out.device).view(
                            -1, *([1] * (out.ndim - 1)))
                        loss = sign * weights[group] * factor * diff.pow(2).sum()
                    loss.backward()
                    values[group] += float(loss.detach())
                if tick:
                    tick(1)
        finally:
            for h in handles:
                h.remove()
    return grads, values
