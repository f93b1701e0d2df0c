"""A pipeline that shares every component with another except its UNet (how the baselines return their edit).

Example:
    >>> edited = with_unet(pipe, copy.deepcopy(pipe.unet))     # doctest: +SKIP
"""

from __future__ import annotations

import copy

import torch


def with_unet(pipe, unet: torch.nn.Module):
    """A shallow copy of `pipe` whose UNet is `unet`. (`DiffusionPipeline.from_pipe` would cast every shared
    component to one dtype in place, changing `pipe` itself when its components differ in dtype.)"""
    new = copy.copy(pipe)
    new.register_modules(unet=unet)
    new.set_progress_bar_config(disable=True)
    return new
