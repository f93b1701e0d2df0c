"""Safe file writing: every artefact appears whole or not at all, and nothing is overwritten unasked.

Example:
    >>> from cadiff.files.io import write_json
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


class OutputPathError(ValueError):
    """The output path cannot be created (its parent is a file, or not writable); nothing was written."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def give_default_mode(path: str | Path) -> None:
    """Give `path` the permissions the user's umask gives a new file or folder (mkstemp/mkdtemp make them private)."""
    os.chmod(path, (0o777 if Path(path).is_dir() else 0o666) & ~_umask())


def check_new(path: str | Path, overwrite: bool = False) -> Path:
    """Fail clearly when `path` exists (unless `overwrite`) or cannot be created; writes nothing."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path} already exists; choose another output path or pass --overwrite")
    probe = path.absolute().parent
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise OutputPathError(f"cannot create {path}: {probe} is a file, not a folder; choose another output path")
    try:  # the one sure test: make (and remove) a folder where the output's first new folder will go
        os.rmdir(tempfile.mkdtemp(prefix=".cadiff-probe.", dir=probe))
    except OSError as exc:
        raise OutputPathError(f"cannot create {path}: {probe} is not writable ({exc.strerror.lower()}); "
                              "choose an output path in a writable folder") from None
    return path


@contextlib.contextmanager
def atomic_dir(path: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside `path`; it becomes `path` only if the body finishes."""
    path = check_new(path, overwrite)
    path.absolute().parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=path.absolute().parent))
    try:
        give_default_mode(tmp)
        yield tmp
        for p in tmp.rglob("*"):  # libraries save through private temporary files too (transformers' save_pretrained)
            if not p.is_symlink():
                give_default_mode(p)
        old = None
        if path.exists() or path.is_symlink():  # moved aside first: the old output goes only once the new is in place
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.absolute().parent))
            os.replace(path, old / path.name)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def atomic_file(path: str | Path, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary file path beside `path`; it replaces `path` only if the body finishes."""
    path = check_new(path, overwrite)
    path.absolute().parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.absolute().parent)
    os.close(fd)
    tmp = Path(name)
    give_default_mode(tmp)
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
