"""Edited copies of a pipeline that share everything but the denoiser (`cadiff.exports` writes them out).

Example:
    >>> edited = edited_copy(pipe, mask)                               # doctest: +SKIP
"""

from __future__ import annotations

import copy

import torch

from cadiff.editing.ablate import apply_mask
from cadiff.attribution.mask import Mask
from cadiff.models.loading import denoiser, model_fingerprint

def with_denoiser(pipe, net: torch.nn.Module):
    """A new pipeline sharing every component with `pipe` except its denoiser, which is `net`.

    (A shallow copy of the pipeline object: `DiffusionPipeline.from_pipe` would cast every shared component to
    one dtype in place, which would change `pipe` itself when its components differ in dtype.)"""
    key = "unet" if getattr(pipe, "unet", None) is denoiser(pipe) else "transformer"
    return with_components(pipe, **{key: net})


def with_components(pipe, **modules):
    """A new pipeline sharing every component with `pipe` except `modules` (name -> module), which replace theirs."""
    new = copy.copy(pipe)
    new.register_modules(**modules)
    new.set_progress_bar_config(disable=True)
    return new


def edited_copy(pipe, mask: Mask, check: bool = True, fill: str = "zero", seed: int = 0):
    """A new pipeline sharing every component with `pipe` except a copy of the denoiser with `mask` zeroed (or,
    `fill="resample"`, filled from its rows: see `apply_mask`)."""
    if check:
        mask.check_fingerprint(model_fingerprint(pipe))
    return apply_mask(with_denoiser(pipe, copy.deepcopy(denoiser(pipe))), mask, check=False, fill=fill, seed=seed)
