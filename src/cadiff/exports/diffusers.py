"""The diffusers folder: the edited pipeline as `save_pretrained` writes it (stock diffusers loads it), with the edit's
record beside it as cadiff_edit.json.

Example:
    >>> export_pipeline(edited, "no-circles", info={"zeroed": 120})     # doctest: +SKIP
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cadiff.exports import Edit, ExportFormat, register_format
from cadiff.io.files import atomic_dir

EDIT_INFO = "cadiff_edit.json"  # beside an exported pipeline: what edit made it


def write_folder(pipe, folder: Path, info: dict[str, Any] | None = None) -> None:
    """`pipe.save_pretrained(folder)`, and `info` as cadiff_edit.json (the model's sampling settings travel in its
    scheduler config, as with a plain `save_pretrained`)."""
    pipe.save_pretrained(str(folder))
    if info is not None:
        (folder / EDIT_INFO).write_text(json.dumps(info, indent=2, default=str) + "\n")


def export_pipeline(pipe, out: str | Path, info: dict[str, Any] | None = None, overwrite: bool = False) -> Path:
    """Save an (edited) pipeline folder atomically, with `info` (e.g. the mask's metadata) as cadiff_edit.json."""
    with atomic_dir(out, overwrite=overwrite) as tmp:
        write_folder(pipe, tmp, info)
    return Path(out)


@register_format
class DiffusersFolder(ExportFormat):
    name = "diffusers"
    summary = "the edited pipeline as a diffusers folder (every family; stock diffusers loads it)"
    file = False
    difference = False

    def write(self, edit: Edit, path: Path) -> None:
        write_folder(edit.edited, path, edit.record)
