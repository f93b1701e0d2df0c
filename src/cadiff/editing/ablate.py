"""Zeroing masked weights: reversibly (`ablated`, bit-exact restore even on error) or for good (`apply_mask`,
which can also fill them with values resampled from their own rows, so that the edit leaves no zero to locate).

Example:
    >>> with cadiff.ablated(pipe, mask):                       # doctest: +SKIP
    ...     images = pipe("a red circle").images              # edited model
    >>> # here every weight is back, bit for bit
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch

from cadiff.errors import BadInput
from cadiff.attribution.mask import Mask
from cadiff.models.loading import denoiser, model_fingerprint


def _targets(pipe, mask: Mask) -> dict[str, torch.nn.Parameter]:
    params = dict(denoiser(pipe).named_parameters())
    missing = [n for n in mask.indices if n not in params]
    if missing:
        raise BadInput(f"the mask names {len(missing)} parameters this model lacks (e.g. {missing[0]}); "
                       "use it with the model it was made for")
    for name, idx in mask.indices.items():
        if idx.numel() and int(idx.max()) >= params[name].numel():
            raise BadInput(f"mask indices for {name} exceed its size; the mask is for another model")
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
                flat = p.view(-1)  # in place on the parameter: its version moves, so its fingerprint is recomputed
                saved[name] = flat[idx].clone()
                flat[idx] = 0
        yield pipe
    finally:
        with torch.no_grad():
            for name, values in saved.items():
                params[name].view(-1)[mask.indices[name].to(values.device)] = values


FILLS = ("zero", "resample")


def apply_mask(pipe, mask: Mask, check: bool = True, fill: str = "zero", seed: int = 0):
    """Set the masked weights of `pipe`'s denoiser in place, for good; returns `pipe`. `fill="zero"`: the paper's
    zeroing; `fill="resample"`: each masked weight takes the value of a weight drawn at random (seeded) from the
    unmasked ones of its own output row (of the whole tensor for a vector), so the edited matrix has its rows'
    own statistics and no exactly-zero entries to find."""
    if fill not in FILLS:
        raise BadInput(f"fill must be one of {', '.join(FILLS)}, got '{fill}'")
    if check:
        mask.check_fingerprint(model_fingerprint(pipe))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in _targets(pipe, mask).items():
            idx = mask.indices[name].to(p.device)
            if fill == "zero":
                p.view(-1)[idx] = 0
            else:
                p.copy_(resampled(p.detach(), idx.cpu(), generator).to(p.device))
    return pipe


def resampled(w: torch.Tensor, idx: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """`w` with its flat entries `idx` replaced by values drawn from the other entries of the same row."""
    rows = w.detach().cpu().reshape(w.shape[0] if w.ndim > 1 else 1, -1).clone()
    width = rows.shape[1]
    taken = torch.zeros(rows.numel(), dtype=torch.bool)
    taken[idx] = True
    taken = taken.view_as(rows)
    for r in torch.unique(idx // width).tolist():
        free = (~taken[r]).nonzero().flatten()
        holes = taken[r].nonzero().flatten()
        if len(free) == 0:  # the whole row is masked: nothing of its own to draw from
            rows[r, holes] = 0
            continue
        rows[r, holes] = rows[r, free[torch.randint(len(free), (len(holes),), generator=generator)]]
    return rows.view_as(w)
