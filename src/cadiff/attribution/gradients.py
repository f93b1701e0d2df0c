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
from cadiff.models.trace import kwargs_rows, take_rows


@contextlib.contextmanager
def only_these_require_grad(module: torch.nn.Module, params: dict[str, torch.nn.Parameter]) -> Iterator[None]:
    """Inside: exactly `params` require grad; the previous flags come back on exit."""
    flags = {id(p): p.requires_grad for p in module.parameters()}
    chosen = {id(p) for p in params.values()}
    try:
        for p in module.parameters():
            p.requires_grad_(id(p) in chosen)
        yield
    finally:
        for p in module.parameters():
            p.requires_grad_(flags[id(p)])


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


def accumulate(denoiser: torch.nn.Module, params: dict[str, torch.nn.Parameter], steps: list[Step],
               weights: dict[int, float], sign: float = 1.0,
               tick: Callable[[int], None] | None = None) -> tuple[dict[int, dict[str, torch.Tensor]], dict[int, float]]:
    """Per group g: fp32 gradients of J_g = sign * sum_rows weights[g] * ||scale (out - target)||^2, and J_g.

    Rows of groups missing from `weights` are skipped (no forward), so groups can be taken one call at a time."""
    grads: dict[int, dict[str, torch.Tensor]] = {
        g: {n: torch.zeros(p.shape, dtype=torch.float32, device=p.device) for n, p in params.items()} for g in weights}
    values = {g: 0.0 for g in weights}
    current: dict[str, dict[str, torch.Tensor]] = {}

    def fold(name):
        def hook(p):
            current["acc"][name].add_(p.grad)
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
                for group, rows in _runs(step.groups):
                    if group not in weights:
                        continue
                    current["acc"] = grads[group]
                    with torch.enable_grad():
                        out = adapter.forward(denoiser, step.sample[rows], take_rows(step.timestep, rows, n),
                                              kwargs_rows(step.kwargs, rows, n, adapter.unbatched()))
                        diff = (out.float() - step.target[rows].float()) * step.scale[rows].to(out.device).view(
                            -1, *([1] * (out.ndim - 1)))
                        loss = sign * weights[group] * diff.pow(2).sum()
                    loss.backward()
                    values[group] += float(loss.detach())
                if tick:
                    tick(1)
        finally:
            for h in handles:
                h.remove()
    return grads, values
