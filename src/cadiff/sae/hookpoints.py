"""Hookpoints: which denoiser modules can be read or steered (the step helpers live in `cadiff.models.steps`).

A hookpoint is the diffusers module path of a block the denoiser's adapter offers: a cross-attention transformer
module of a U-Net (`mid_block.attentions.0`), a transformer block of a DiT (`transformer_blocks.3`); a step is the index of a sampling step, 0 = first (t = 1.0), N-1 = last (t = 0.0).

Example:
    >>> from cadiff.sae.hookpoints import hookpoints, resolve_steps
    >>> hookpoints(pipe)                                 # doctest: +SKIP
    ['down_blocks.0.attentions.0', ..., 'mid_block.attentions.0', ...]
    >>> resolve_steps("first,mid,last", 25), resolve_steps("early", 25)
    ([0, 12, 24], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
"""

from __future__ import annotations

import torch

from cadiff.adapters import adapter_for
from cadiff.errors import BadInput
from cadiff.models.loading import denoiser
from cadiff.models.steps import WINDOWS, resolve_steps, step_time, window_steps  # noqa: F401 (re-exported)


def hookpoints(pipe_or_unet) -> list[str]:
    """Module paths of the denoiser blocks an SAE can read, in execution order, as its adapter names them (U-Nets:
    their cross-attention transformer modules; DiTs: their transformer blocks)."""
    net = pipe_or_unet if isinstance(pipe_or_unet, torch.nn.Module) else denoiser(pipe_or_unet)
    names = adapter_for(net).hookpoints(net)
    if not names:
        raise BadInput(f"this {type(net).__name__} has no blocks an SAE can read")
    return names


def resolve_hookpoint(pipe_or_unet, name: str) -> torch.nn.Module:
    """The module at hookpoint `name`; ValueError listing the valid hookpoints if there is none."""
    valid = hookpoints(pipe_or_unet)
    if name not in valid:
        raise BadInput(f"unknown hookpoint '{name}'; this model's hookpoints are: {', '.join(valid)}")
    unet = pipe_or_unet if isinstance(pipe_or_unet, torch.nn.Module) else denoiser(pipe_or_unet)
    return unet.get_submodule(name)
