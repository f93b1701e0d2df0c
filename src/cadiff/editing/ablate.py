"""Zeroing masked weights: reversibly (`ablated`, bit-exact restore even on error) or for good (`apply_mask`).

Example:
    >>> with cadiff.ablated(pipe, mask):                       # doctest: +SKIP
    ...     images = pipe("a red circle").images              # edited model
    >>> # here every weight is back, bit for bit
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch

from cadiff.files.mask import Mask
from cadiff.models.loading import denoiser, model_fingerprint


def _targets(pipe, mask: Mask) -> dict[str, torch.nn.Parameter]:
    params = dict(denoiser(pipe).named_parameters())
    missing = [n for n in mask.indices if n not in params]
    if missing:
        raise ValueError(f"the mask names {len(missing)} parameters this model lacks (e.g. {missing[0]}); "
                         "use it with the model it was made for")
    for name, idx in mask.indices.items():
        if idx.numel() and int(idx.max()) >= params[name].numel():
            raise ValueError(f"mask indices for {name} exceed its size; the mask is for another model")
    return {n: params[n] for n in mask.indices}


@contextlib.contextmanager
def ablated(pipe, mask: Mask, check: bool = True) -> Iterator:
    """Inside the block the masked weights of `pipe`'s denoiser are zero; on exit (also on error) they are restored
    bit-exactly. `check` verifies the model fingerprint first."""
    if check:
        mask.check_fingerprint(model_fingerprint(pipe))
    params = _targets(pipe, mask)
    saved: dict[str, torch.Tensor] = {}
    try:
        with torch.no_grad():
            for name, p in params.items():
                idx = mask.indices[name].to(p.device)
                flat = p.data.view(-1)
                saved[name] = flat[idx].clone()
                flat[idx] = 0
        yield pipe
    finally:
        with torch.no_grad():
            for name, values in saved.items():
                params[name].data.view(-1)[mask.indices[name].to(values.device)] = values


def apply_mask(pipe, mask: Mask, check: bool = True):
    """Zero the masked weights of `pipe`'s denoiser in place, for good; returns `pipe`."""
    if check:
        mask.check_fingerprint(model_fingerprint(pipe))
    with torch.no_grad():
        for name, p in _targets(pipe, mask).items():
            p.data.view(-1)[mask.indices[name].to(p.device)] = 0
    return pipe
