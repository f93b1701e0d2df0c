"""Steering through concept vectors: a forward hook on the SAE's hookpoint edits the residual update of the
conditional branch at every step of a window, through the decoder rows f_c of chosen latents.

- spatial: inside `region` the latents are set to beta * ||Z[i,j]||, outside to 0:
  delta + sum_c (new_c - z_c) f_c
- global: delta + beta * (||Z[i,j]|| / sum_ij ||Z||) * f_c at every position.

Z is the SAE code of the update at each position. Steering at beta = 0 in 'global' mode is an exact no-op.

Example:
    >>> import cadiff
    >>> with cadiff.steer(pipe, sae, latents=[12], mode="global", beta=8, at_steps="middle"):      # doctest: +SKIP
    ...     images = cadiff.generate(pipe, ["a red circle"], seeds=[0])
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch

from cadiff.adapters import adapter_for
from cadiff.errors import BadInput
from cadiff.config import Config, option
from cadiff.models.loading import denoiser, resolve_sampling
from cadiff.models.trace import DenoiserTrace
from cadiff.sae.hookpoints import resolve_hookpoint, resolve_steps
from cadiff.sae.model import TopKSAE

MODES = ("spatial", "global")


@dataclass(frozen=True)
class SteerConfig(Config):
    """How to steer: the mode, the strength and the sampling steps (where and which latents are the request's)."""

    mode: str = option("global", "global: add the concept everywhere (default); spatial: move it into a region "
                                 "(--quadrant)", choices=MODES)
    beta: float = option(8.0, "strength (default 8)")
    at_steps: str | Sequence[int] = option("middle", "steps to steer at: early | middle (default) | final | "
                                                     "indices 0,1,2")

    def __post_init__(self):
        self.check_bounds()
        if self.mode not in MODES:
            raise BadInput(f"unknown steering mode '{self.mode}'; use 'spatial' or 'global'")
        if isinstance(self.at_steps, str) and self.at_steps.replace(",", "").isdigit():
            object.__setattr__(self, "at_steps", tuple(int(s) for s in self.at_steps.split(",")))


def quadrant_region(grid: tuple[int, int], quadrant: str) -> np.ndarray:
    """Boolean (H, W) mask of one quadrant: 'top-left', 'top-right', 'bottom-left' or 'bottom-right'."""
    names = ("top-left", "top-right", "bottom-left", "bottom-right")
    if quadrant not in names:
        raise BadInput(f"unknown quadrant '{quadrant}'; use one of {', '.join(names)}")
    h, w = grid
    region = np.zeros((h, w), bool)
    rows = slice(0, h // 2) if quadrant.startswith("top") else slice(h // 2, h)
    cols = slice(0, w // 2) if quadrant.endswith("left") else slice(w // 2, w)
    region[rows, cols] = True
    return region


def steer_update(sae: TopKSAE, delta: torch.Tensor, latents: Sequence[int], mode: str, beta: float,
                 region: torch.Tensor | None = None) -> torch.Tensor:
    """The steered residual update (B, P, C) for an update `delta` (B, P, C); `region` (P,) bool for 'spatial'."""
    return delta + steering_change(sae, delta, latents, mode, beta, region)


def steering_change(sae: TopKSAE, delta: torch.Tensor, latents: Sequence[int], mode: str, beta: float,
                    region: torch.Tensor | None = None) -> torch.Tensor:
    """What steering adds to the update `delta` (B, P, C): sum_c (new_c - z_c) f_c, or the global term."""
    if mode not in MODES:
        raise BadInput(f"unknown steering mode '{mode}'; use 'spatial' or 'global'")
    if not latents:
        return torch.zeros_like(delta)
    bad = [c for c in latents if not 0 <= c < sae.d_sae]
    if bad:
        raise BadInput(f"latent(s) {bad} outside the dictionary of {sae.d_sae}")
    z = sae.encode(delta.float())
    norm = z.norm(dim=-1, keepdim=True)  # ||Z[i,j]||, (B, P, 1)
    f = sae.W_dec[list(latents)].to(delta.dtype)  # (L, C)
    if mode == "spatial":
        if region is None:
            raise BadInput("spatial steering needs a target region")
        inside = region.to(delta.device).reshape(1, -1, 1).float()
        new = beta * norm * inside  # (B, P, 1), the same for each chosen latent
        change = (new - z[..., list(latents)]) @ f.float()
    else:
        share = norm / norm.sum(dim=1, keepdim=True).clamp_min(1e-12)
        change = (beta * share) * f.float().sum(0)
    return change.to(delta.dtype)


@contextlib.contextmanager
def steer(pipe, sae: TopKSAE, latents: Sequence[int], config: SteerConfig | None = None, *,
          region: np.ndarray | None = None, quadrant: str | None = None, steps: int | None = None,
          **options) -> Iterator[None]:
    """While active, every pipeline call of `steps` sampling steps is steered at the SAE's hookpoint, conditional
    branch, as `config` says (default SteerConfig(); `options` set its fields): `latents` in its mode with its
    strength at the steps it names; spatial mode moves them into `region` (H, W) bool or `quadrant`."""
    config = (config or SteerConfig()).with_options("steer()", **options)
    mode, beta, at_steps = config.mode, config.beta, config.at_steps
    hookpoint = sae.hookpoint
    if hookpoint is None:
        raise BadInput("this SAE does not record its hookpoint (metadata.hook_name); cannot attach it")
    module = resolve_hookpoint(pipe, hookpoint)
    width = getattr(getattr(module, "config", None), "in_channels", None)
    if width is not None and width != sae.d_in:
        raise BadInput(f"the SAE reads {sae.d_in}-dim activations but {hookpoint} of this model has {width} "
                       "channels; use an SAE trained on this model")
    n_steps, _ = resolve_sampling(pipe, steps)
    chosen = set(resolve_steps(at_steps, n_steps))
    grid = tuple(sae.metadata.get("grid") or ())
    if mode == "spatial":
        if quadrant is not None:
            if not grid:
                raise BadInput("this SAE does not record its feature grid; pass region= explicitly")
            region = quadrant_region(grid, quadrant)
        if region is None:
            raise BadInput("spatial steering needs region= (H, W) bool or quadrant=")
    trace = DenoiserTrace(pipe)
    adapter = adapter_for(denoiser(pipe))
    sae = sae.to(next(module.parameters()).device)

    def hook(mod, args, kwargs, output):
        call = trace.current
        if call.step not in chosen or "cond" not in call.parts:  # the unconditional branch is never steered
            return None
        if len(pipe.scheduler.timesteps) != n_steps:
            raise RuntimeError(f"steering was set up for {n_steps} steps but the pipeline runs "
                               f"{len(pipe.scheduler.timesteps)}; pass steps= to steer()")
        inp, out, (h, w) = adapter.block_tokens(args, kwargs, output, call.grid)  # (B, P, C) image tokens
        if region is not None and tuple(region.shape) != (h, w):
            raise BadInput(f"region has shape {tuple(region.shape)} but {hookpoint} has a {h}x{w} grid")
        delta = out - inp
        rows = call.parts["cond"]
        reg = torch.from_numpy(np.asarray(region)).flatten() if region is not None else None
        change = torch.zeros_like(delta)
        change[rows] = steering_change(sae, delta[rows], latents, mode, beta, reg)
        return adapter.with_block_tokens(args, kwargs, output, out + change, (h, w))

    with trace:
        handle = module.register_forward_hook(hook, with_kwargs=True)
        try:
            yield
        finally:
            handle.remove()
