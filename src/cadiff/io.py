"""Safe file writing: every artefact appears whole or not at all, and nothing is overwritten unasked.

Example:
    >>> from cadiff.io import write_json
    >>> write_json("run.json", {"seed": 0})  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator


class OutputExistsError(FileExistsError):
    """The output path exists and the user did not ask to overwrite it."""


def check_new(path: str | Path, overwrite: bool = False) -> Path:
    """Fail clearly when `path` exists (unless `overwrite`) or its parent cannot be written."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path} already exists; choose another output path or pass --overwrite")
    parent = path.absolute().parent
    probe = parent
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise NotADirectoryError(f"cannot create {path}: {probe} is a file, not a folder; choose another output path")
    if not os.access(probe, os.W_OK):
        raise PermissionError(f"cannot write to {probe}; choose an output path in a writable folder")
    return path


@contextlib.contextmanager
def atomic_dir(path: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside `path`; it becomes `path` only if the body finishes."""
    path = check_new(path, overwrite)
    path.absolute().parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=path.absolute().parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if path.exists():
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    os.replace(tmp, path)


@contextlib.contextmanager
def atomic_file(path: str | Path, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary file path beside `path`; it replaces `path` only if the body finishes."""
    path = check_new(path, overwrite)
    path.absolute().parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.absolute().parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)


def write_json(path: str | Path, data: Any, overwrite: bool = True) -> Path:
    """Write `data` as indented JSON, atomically."""
    with atomic_file(path, overwrite) as tmp:
        tmp.write_text(json.dumps(data, indent=2, default=_jsonable) + "\n")
    return Path(path)


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, (set, tuple)):
        return list(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot write {type(obj).__name__} as JSON")
