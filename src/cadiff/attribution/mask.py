"""Mask: which weights of which parameters to zero, with the fingerprint of the model it belongs to.

A mask file is a safetensors file of flat int64 indices per parameter; its header holds the metadata
(model fingerprint, how the mask was chosen). Masks of several concepts union with `|`.

Example:
    >>> mask = attr.select(ratio=0.03) | other.select(ratio=0.03)   # doctest: +SKIP
    >>> mask.save("erase.mask.safetensors"); Mask.load("erase.mask.safetensors")   # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from cadiff.errors import BadInput, MissingFile
from cadiff.io.files import atomic_file, check_new

HEADER_KEY = "cadiff"


def read_header(path: str | Path, kind: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors and cadiff metadata of a safetensors file written by cadiff; clear errors otherwise."""
    path = Path(path)
    if not path.is_file():
        raise MissingFile(f"{kind} file {path} not found")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:
        raise BadInput(f"{path} is not a readable safetensors file ({exc})") from exc
    if HEADER_KEY not in meta:
        raise BadInput(f"{path} has no cadiff metadata: not a {kind} file written by cadiff")
    info = json.loads(meta[HEADER_KEY])
    if info.get("kind") != kind:
        raise BadInput(f"{path} is a cadiff {info.get('kind')} file, not a {kind} file")
    return tensors, info


def write_with_header(path: str | Path, tensors: dict[str, torch.Tensor], info: dict[str, Any],
                      overwrite: bool = False) -> Path:
    """Atomically write tensors + cadiff metadata (JSON in the safetensors header)."""
    check_new(path, overwrite, folder=False)
    with atomic_file(path) as tmp:
        save_file({k: v.contiguous().cpu() for k, v in tensors.items()}, str(tmp),
                  metadata={HEADER_KEY: json.dumps(info, default=str)})
    return Path(path)


def check_fingerprint(expected: str | None, actual: str, what: str) -> None:
    """ValueError when the model of fingerprint `actual` is not the one `what` was made with (`expected`)."""
    if expected is not None and actual != expected:
        raise BadInput(f"{what} was made with model {expected}, but this model is {actual}; "
                       "use it with the same (unedited) model it was computed on")


@dataclass
class Mask:
    """Flat indices of the weights to zero, per parameter name, plus metadata (fingerprint, settings)."""

    indices: dict[str, torch.Tensor]
    shapes: dict[str, tuple[int, ...]]
    metadata: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return sum(int(i.numel()) for i in self.indices.values())

    def counts(self) -> dict[str, int]:
        """Number of zeroed weights per parameter."""
        return {k: int(v.numel()) for k, v in self.indices.items()}

    @property
    def fingerprint(self) -> str | None:
        return self.metadata.get("fingerprint")

    def __or__(self, other: "Mask") -> "Mask":
        if self.fingerprint != other.fingerprint:
            raise BadInput(f"cannot unite masks of different models ({self.fingerprint} and {other.fingerprint})")
        names = sorted(set(self.indices) | set(other.indices))
        empty = torch.zeros(0, dtype=torch.int64)
        indices = {n: torch.unique(torch.cat([self.indices.get(n, empty), other.indices.get(n, empty)])) for n in names}
        parts = self.metadata.get("parts", [self.metadata]) + other.metadata.get("parts", [other.metadata])
        return Mask(indices, {**self.shapes, **other.shapes}, {"fingerprint": self.fingerprint, "parts": parts})

    def without(self, names) -> "Mask":
        """This mask less the parameters `names`."""
        names = set(names)
        return Mask({n: i for n, i in self.indices.items() if n not in names},
                    {n: s for n, s in self.shapes.items() if n not in names}, dict(self.metadata))

    def booleans(self) -> dict[str, torch.Tensor]:
        """The mask as boolean tensors shaped like its parameters (True where a weight is selected)."""
        out = {}
        for name, flat in self.indices.items():
            where = torch.zeros(self.shapes[name], dtype=torch.bool)
            where.view(-1)[flat] = True
            out[name] = where
        return out

    def check_fingerprint(self, fingerprint: str) -> None:
        """ValueError if the model of `fingerprint` is not the one this mask was selected on."""
        check_fingerprint(self.fingerprint, fingerprint, "this mask")

    def save(self, path: str | Path, overwrite: bool = False) -> Path:
        """Write the mask file (safetensors of indices, metadata in the header)."""
        info = {"kind": "mask", **self.metadata, "shapes": {k: list(v) for k, v in self.shapes.items()},
                "count": len(self)}
        return write_with_header(path, self.indices, info, overwrite)

    @classmethod
    def load(cls, path: str | Path) -> "Mask":
        """Read a mask file written by `save`."""
        tensors, info = read_header(path, "mask")
        shapes = {k: tuple(v) for k, v in (info.pop("shapes", None) or {}).items()}
        for key in ("kind", "count"):
            info.pop(key, None)
        for name, idx in tensors.items():
            _check_indices(path, name, idx, shapes.get(name))
        return cls({k: v.to(torch.int64) for k, v in tensors.items()}, shapes, info)


def _check_indices(path: str | Path, name: str, idx: torch.Tensor, shape: tuple[int, ...] | None) -> None:
    """ValueError unless `idx` are flat integer indices inside a parameter of `shape` (a negative or too large one
    would wrap or fail on another weight)."""
    where = f"mask file {path}: parameter {name}"
    if shape is None:
        raise BadInput(f"{where} has no shape in the file's header; write masks with cadiff erase/amplify or Mask.save")
    if idx.dtype == torch.bool or idx.dtype.is_floating_point or idx.dtype.is_complex or idx.ndim != 1:
        raise BadInput(f"{where} holds {str(idx.dtype).removeprefix('torch.')} indices of shape {tuple(idx.shape)}; "
                       "a mask holds flat integer indices (write it with cadiff erase/amplify or Mask.save)")
    numel = math.prod(shape)
    bad = idx[(idx < 0) | (idx >= numel)]
    if bad.numel():
        raise BadInput(f"{where} has index {int(bad[0])} outside [0, {numel}) (its shape {list(shape)}); the file "
                       "is damaged or was edited: recompute the mask with cadiff erase/amplify")
