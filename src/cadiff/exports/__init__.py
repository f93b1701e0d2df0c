"""Exports: an edit written where people use models. A format is a registered class (`register_format`): the
diffusers folder, weight-difference patch files for ComfyUI and A1111 / Forge, a peft adapter that switches the edit
on and off, and a single-file checkpoint in the family's original layout.

Every format but the diffusers folder writes the edit as a difference from the model it was made from, so an
`Edit` holds both pipelines; the difference is computed once (`Edit.difference`), and everything a format refuses
(an unknown format, a family it has no layout for, an edit that changes nothing) is refused before anything is
written. Files are written atomically, with the edit's provenance in their metadata.

Example:
    >>> edit = Edit(edited_pipe, base=pipe, record={"method": "cad"})    # doctest: +SKIP
    >>> export(edit, "no-circle.safetensors", "comfyui")                  # doctest: +SKIP
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

import torch

from cadiff.adapters import adapter_for
from cadiff.errors import BadInput
from cadiff.io.files import atomic_dir, atomic_file
from cadiff.models.loading import denoiser, model_fingerprint
from cadiff.registry import Registry

FORMATS = Registry("export format")
register_format = FORMATS.register

__all__ = ["Edit", "ExportFormat", "export", "get_format", "register_format", "weight_difference"]


@dataclass
class Edit:
    """An edited pipeline, the pipeline it was made from (`base`: None when only the folder is wanted) and the
    record of how it was made (the method's settings; written into each file's metadata)."""

    edited: Any
    base: Any = None
    record: dict[str, Any] = field(default_factory=dict)

    @property
    def family(self) -> str:
        return adapter_for(denoiser(self.edited)).name

    @cached_property
    def difference(self) -> dict[str, torch.Tensor]:
        """edited - base for every denoiser weight that the edit changed (`weight_difference`)."""
        return weight_difference(denoiser(self.base), denoiser(self.edited))

    def provenance(self, form: str) -> dict[str, Any]:
        """What a file says about itself: the format, the family, both models' fingerprints and the edit's record."""
        out = {"format": form, "family": self.family, "edited_fingerprint": model_fingerprint(self.edited),
               "edit": self.record}
        if self.base is not None:
            out["base_fingerprint"] = model_fingerprint(self.base)
        return out

    def metadata(self, form: str) -> dict[str, str]:
        """The provenance as safetensors metadata (strings)."""
        return {"cadiff": json.dumps(self.provenance(form), default=str)}


def weight_difference(base: torch.nn.Module, edited: torch.nn.Module) -> dict[str, torch.Tensor]:
    """edited - base for every parameter that differs, by name: in the weights' own dtype where adding it back gives
    the edited weights exactly (a zeroed weight's difference is exactly minus it), else in fp32 (exact for fp16 and
    bf16 weights; for fp32 weights, a dense edit's difference can miss by a rounding step where it changes a weight
    by far more than its size). BadInput when the two are not the same model."""
    theirs = dict(edited.named_parameters())
    mine = dict(base.named_parameters())
    if theirs.keys() != mine.keys() or any(theirs[n].shape != p.shape for n, p in mine.items()):
        raise BadInput(f"the edited {type(edited).__name__} is not the same model as the one it is compared with (its "
                       "parameters differ in name or shape); export against the model the edit was made from")
    out = {}
    with torch.no_grad():
        for name, b in mine.items():
            e = theirs[name]
            if torch.equal(b, e):
                continue
            d = e - b
            if not torch.equal(b + d, e):
                d = e.float() - b.float()
            out[name] = d.detach().cpu()
    return out


class ExportFormat:
    """One way to write an edit. `file`: it is one file (else a folder); `difference`: it writes the edit as a
    difference from the base model (so it needs one, and an edit that changes something)."""

    name: ClassVar[str]
    summary: ClassVar[str]
    file: ClassVar[bool] = True
    difference: ClassVar[bool] = True

    def families(self) -> tuple[str, ...] | None:
        """The denoiser families this format has a layout for (None: every family)."""
        return None

    def check(self, edit: Edit) -> None:
        """BadInput naming what is missing for `edit`: the family's layout, the base model."""
        families = self.families()
        if families is not None and edit.family not in families:
            raise BadInput(f"format '{self.name}' has no layout for the {edit.family} family (it has one for "
                           f"{', '.join(families)}); export --format diffusers or peft instead")
        if self.difference and edit.base is None:
            raise BadInput(f"format '{self.name}' writes the edit as a difference from the original model; give the "
                           "model the edit was made from")

    def check_difference(self, edit: Edit) -> None:
        """BadInput when this format cannot hold the edit's difference (computed by then)."""

    def write(self, edit: Edit, path: Path) -> None:
        raise NotImplementedError


def get_format(name: str) -> ExportFormat:
    """The export format `name`; BadInput listing the formats otherwise."""
    return FORMATS.lookup(name)()


def export(edit: Edit, path: str | Path, form: str = "diffusers", overwrite: bool = False) -> Path:
    """Write `edit` to `path` in format `form`, atomically; everything it refuses is refused before anything is
    written (an unknown format, a family without the format's layout, an edit that changes no weight)."""
    fmt = get_format(form)
    fmt.check(edit)
    if fmt.difference:
        if not edit.difference:
            raise BadInput("the edit changes no weight of the denoiser: there is nothing to export")
        fmt.check_difference(edit)
    with (atomic_file(path, overwrite) if fmt.file else atomic_dir(path, overwrite)) as tmp:
        fmt.write(edit, tmp)
    return Path(path)


# the built-in formats register themselves
from cadiff.exports import diffusers, patch, peft, single_file  # noqa: E402,F401,I001
