"""One-call edits: `erase` and `amplify` return an edited copy of the pipeline; `export_pipeline` saves one that
stock diffusers loads with no cadiff import.

Example:
    >>> import cadiff
    >>> pipe = cadiff.load_pipeline()
    >>> edited = cadiff.erase(pipe, "circle", preserve=["square", "triangle", "star", "cross", "heart"])
    >>> edited.save_pretrained("no-circles")   # keeps the sampling settings; export_pipeline also records the edit
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from cadiff.editing.ablate import apply_mask
from cadiff.files.mask import Mask
from cadiff.files.io import atomic_dir
from cadiff.models.loading import denoiser, model_fingerprint

EDIT_INFO = "cadiff_edit.json"
DEFAULT_RATIO = 0.03  # per row: measured on the embedded model; the paper uses 0.001 on SD 1.4's wide rows


def with_denoiser(pipe, net: torch.nn.Module):
    """A new pipeline sharing every component with `pipe` except its denoiser, which is `net`.

    (A shallow copy of the pipeline object: `DiffusionPipeline.from_pipe` would cast every shared component to
    one dtype in place, which would change `pipe` itself when its components differ in dtype.)"""
    key = "unet" if getattr(pipe, "unet", None) is denoiser(pipe) else "transformer"
    new = copy.copy(pipe)
    new.register_modules(**{key: net})
    new.set_progress_bar_config(disable=True)
    return new


def edited_copy(pipe, mask: Mask, check: bool = True):
    """A new pipeline sharing every component with `pipe` except a copy of the denoiser with `mask` zeroed."""
    if check:
        mask.check_fingerprint(model_fingerprint(pipe))
    return apply_mask(with_denoiser(pipe, copy.deepcopy(denoiser(pipe))), mask, check=False)


def plan_edit(pipe, concepts: str | Sequence[str], objective: str, *, preserve: Sequence[str] | None = None,
              ratio: float | None = DEFAULT_RATIO, count: int | None = None, scope: str = "row", rounds: int = 1,
              on_round: Callable[[int, Mask], None] | None = None, **attribute_kwargs) -> tuple[list, Mask]:
    """Attribute every concept (together) and unite their selections: (attributions of the last round, mask).

    With `rounds` > 1 the scores are recomputed on the model with the mask so far zeroed, and each round adds its
    own top `ratio` (or `count`): the first-order estimate is taken again around the edited model. `on_round(k,
    mask)` sees the mask after every round k (1-based), e.g. to keep or measure the earlier ones."""
    from cadiff.attribution import attribute
    from cadiff.attribution.objectives import get_objective
    from cadiff.editing.ablate import ablated
    from cadiff.files.select import check_amount

    check_amount(ratio, count)
    if int(rounds) != rounds or rounds < 1:
        raise ValueError(f"rounds must be a positive integer, got {rounds}")
    concepts = [concepts] if isinstance(concepts, str) else list(concepts)
    sign = get_objective(objective).select_sign
    mask: Mask | None = None
    for round_ in range(int(rounds)):
        if mask is None:
            attrs = attribute(pipe, concepts, preserve=preserve, objective=objective, **attribute_kwargs)
        else:
            with ablated(pipe, mask):
                attrs = attribute(pipe, concepts, preserve=preserve, objective=objective, **attribute_kwargs)
        for a in attrs:
            new = a.select(ratio=ratio, count=count, sign=sign, scope=scope)
            if mask is not None:  # scored on the edited model; its indices address the original one
                new.metadata.update(fingerprint=mask.fingerprint, round=round_ + 1)
            mask = new if mask is None else mask | new
        if on_round is not None:
            on_round(round_ + 1, mask)
    return attrs, mask


def erase(pipe, concepts: str | Sequence[str], *, preserve: Sequence[str] | None = None,
          ratio: float | None = DEFAULT_RATIO, count: int | None = None, scope: str = "row", rounds: int = 1,
          **attribute_kwargs):
    """CAD-Erase: a copy of `pipe` with the top positive components of each concept's erase score zeroed
    (`rounds` > 1: re-scored on the edited model that many times, see `plan_edit`)."""
    _, mask = plan_edit(pipe, concepts, "erase", preserve=preserve, ratio=ratio, count=count, scope=scope,
                        rounds=rounds, **attribute_kwargs)
    return edited_copy(pipe, mask, check=False)


def amplify(pipe, concepts: str | Sequence[str], *, preserve: Sequence[str] | None = None,
            ratio: float | None = DEFAULT_RATIO, count: int | None = None, scope: str = "row", rounds: int = 1,
            **attribute_kwargs):
    """CAD-Amplify: a copy of `pipe` with the most negative components of the amplify objective zeroed."""
    _, mask = plan_edit(pipe, concepts, "amplify", preserve=preserve, ratio=ratio, count=count, scope=scope,
                        rounds=rounds, **attribute_kwargs)
    return edited_copy(pipe, mask, check=False)


def export_pipeline(pipe, out: str | Path, info: dict[str, Any] | None = None, overwrite: bool = False) -> Path:
    """Save an (edited) pipeline folder atomically, with `info` (e.g. the mask's metadata) as cadiff_edit.json.
    Stock diffusers loads the folder as usual; the model's sampling settings travel in its scheduler config (as
    they do with a plain `save_pretrained`)."""
    with atomic_dir(out, overwrite=overwrite) as tmp:
        pipe.save_pretrained(str(tmp))
        if info is not None:
            (tmp / EDIT_INFO).write_text(json.dumps(info, indent=2, default=str) + "\n")
    return Path(out)
