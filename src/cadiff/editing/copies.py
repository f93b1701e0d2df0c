"""Edited copies of a pipeline that share everything but the denoiser, and exporting one as a plain diffusers folder.

Example:
    >>> edited = edited_copy(pipe, mask)                               # doctest: +SKIP
    >>> export_pipeline(edited, "no-circles", info={"zeroed": len(mask)})   # doctest: +SKIP
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import torch

from cadiff.editing.ablate import apply_mask
from cadiff.io.files import atomic_dir
from cadiff.attribution.mask import Mask
from cadiff.models.loading import denoiser, model_fingerprint

EDIT_INFO = "cadiff_edit.json"  # beside an exported pipeline: what edit made it


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


def export_pipeline(pipe, out: str | Path, info: dict[str, Any] | None = None, overwrite: bool = False) -> Path:
    """Save an (edited) pipeline folder atomically, with `info` (e.g. the mask's metadata) as cadiff_edit.json.
    Stock diffusers loads the folder as usual; the model's sampling settings travel in its scheduler config (as
    they do with a plain `save_pretrained`)."""
    with atomic_dir(out, overwrite=overwrite) as tmp:
        pipe.save_pretrained(str(tmp))
        if info is not None:
            (tmp / EDIT_INFO).write_text(json.dumps(info, indent=2, default=str) + "\n")
    return Path(out)
