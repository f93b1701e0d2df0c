"""Safe file writing: every artefact appears whole or not at all, and nothing is overwritten unasked.

Example:
    >>> from cadiff.io.files import write_json
    >>> write_json("run.json", {"seed": 0})  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import numbers
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

from cadiff.errors import BadInput, CadiffError


class OutputExistsError(CadiffError, FileExistsError):
    """The output path exists and the user did not ask to overwrite it (or cadiff did not make it)."""


class OutputBusyError(OutputExistsError):
    """Another cadiff process is writing the output path now."""


class OutputPathError(BadInput):
    """The output path cannot be created (its parent is a file, or not writable); nothing was written."""


# The files by which cadiff knows a folder it made (a folder without one is never replaced, even with --overwrite):
# run.json of every command's run folder (evaluate's results too), meta.json of an activation capture, train_log.json
# of a trained shapes model, cadiff_edit.json of an exported pipeline, edit.json of a saved EditResult.
MANIFESTS = {
    "run.json": lambda d: "command" in d and "cadiff" in _dict(d.get("versions")),
    "meta.json": lambda d: str(d.get("format", "")).startswith("cadiff-"),
    "train_log.json": lambda d: "cadiff" in _dict(d.get("versions")),
    "cadiff_edit.json": lambda d: True,
    "edit.json": lambda d: "method" in d and "objective" in d,
}


def _dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def give_default_mode(path: str | Path) -> None:
    """Give `path` the permissions the user's umask gives a new file or folder (mkstemp/mkdtemp make them private)."""
    os.chmod(path, (0o777 if Path(path).is_dir() else 0o666) & ~_umask())


def made_by_cadiff(path: str | Path) -> bool:
    """Whether `path` is a folder (not a link) holding one of cadiff's `MANIFESTS`, as cadiff writes it."""
    path = Path(path)
    if path.is_symlink() or not path.is_dir():
        return False
    for name, written_by_cadiff in MANIFESTS.items():
        try:
            data = json.loads((path / name).read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and written_by_cadiff(data):
            return True
    return False


def _lock_path(path: Path) -> Path:
    """The lock file of output `path`, the same however the path is spelled."""
    path = path.absolute()
    path = path.parent.resolve() / path.name
    return path.parent / f".{path.name}.lock"


_held: set[Path] = set()  # the locks this process holds


def _busy(path: Path, lock: Path) -> OutputBusyError:
    try:
        pid = lock.read_text().strip() or "?"
    except OSError:
        pid = "?"
    return OutputBusyError(f"{path} is being written by another cadiff process (pid {pid}); wait for it or choose "
                           "another --out")


@contextlib.contextmanager
def output_lock(path: str | Path) -> Iterator[Path]:
    """Hold the lock of output `path` while writing it: an flock on `.<name>.lock` beside it (holding this process's
    pid; removed afterwards). OutputBusyError if another process holds it; the lock dies with its process, so the
    file a killed run leaves blocks nothing. Re-entrant within a process."""
    path = Path(path)
    lock = _lock_path(path)
    if lock in _held:
        yield path
        return
    patience = time.monotonic() + 0.5  # another command's `check_target` may hold it for a moment
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)  # the umask gives its permissions
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if os.fstat(fd).st_ino == os.stat(lock).st_ino:
                break
        except FileNotFoundError:
            pass  # the holder before removed this file once done: lock the one there now
        except BlockingIOError:
            if time.monotonic() > patience:
                os.close(fd)
                raise _busy(path, lock) from None
            time.sleep(0.05)
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        _held.add(lock)
        yield path
    finally:
        _held.discard(lock)
        with contextlib.suppress(OSError):
            lock.unlink()
        os.close(fd)


def check_target(path: str | Path) -> Path:
    """Fail clearly when `path` can never be an output (the current folder, one above it, a name like `..`) or another
    cadiff process is writing it now; writes nothing."""
    path = Path(path)
    try:
        here, target = Path.cwd().resolve(), path.resolve()
        above = target == here or target in here.parents
    except (OSError, RuntimeError):  # the current folder was removed, or a link loop (reported when written)
        above = False
    if path.name in ("", ".", "..") or above:
        raise OutputPathError(f"cannot write to {path}: it is the current folder or one above it, which no output "
                              "replaces; choose a new folder for --out (e.g. runs/my-run)")
    lock = _lock_path(path)
    if lock in _held:
        return path
    try:
        fd = os.open(lock, os.O_RDONLY)
    except OSError:  # no lock file (no writer), or one this user cannot read (the real lock reports it)
        return path
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        raise _busy(path, lock) from None
    finally:
        os.close(fd)
    return path


def _check_existing(path: Path, overwrite: bool, folder: bool) -> None:
    if not (path.exists() or path.is_symlink()):
        return
    if folder and not made_by_cadiff(path):
        what = "a file, not a cadiff run folder" if path.is_file() else \
            "not a cadiff run folder (no run.json written by cadiff)"
        if overwrite:
            raise OutputExistsError(f"{path} is {what}; --overwrite only replaces cadiff's own run folders: choose "
                                    "another --out")
        raise OutputExistsError(f"{path} already exists and is {what}; choose another --out")
    if not overwrite:
        raise OutputExistsError(f"{path} already exists; choose another output path or pass --overwrite")


def check_new(path: str | Path, overwrite: bool = False, folder: bool = True) -> Path:
    """Fail clearly, writing nothing, when output `path` cannot be made: `check_target`, it exists (a `folder` output
    may be replaced with `overwrite` only if cadiff made it: see `MANIFESTS`; a file output with `overwrite`), or its
    place is under a file or not writable."""
    path = check_target(path)
    _check_existing(path, overwrite, folder)
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
    """Yield a temporary folder beside `path`; it becomes `path` only if the body finishes. `path` is locked meanwhile
    (`output_lock`); an existing `path` is replaced only with `overwrite` and only if cadiff made it (`check_new`),
    and the old one goes only once the new one is in place."""
    path = check_new(path, overwrite)
    parent = path.absolute().parent
    parent.mkdir(parents=True, exist_ok=True)
    with output_lock(path):
        _check_existing(path, overwrite, folder=True)  # again, now that no other cadiff process can write it
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=parent))
        old = None
        try:
            give_default_mode(tmp)
            yield tmp
            for p in tmp.rglob("*"):  # libraries save through private temporary files too (save_pretrained)
                if not p.is_symlink():
                    give_default_mode(p)
            _check_existing(path, overwrite, folder=True)  # nothing that may not be replaced appeared meanwhile
            if path.exists() or path.is_symlink():  # moved aside first: the old goes only once the new is in place
                old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=parent))
                os.replace(path, old / path.name)
            try:
                os.replace(tmp, path)
            except BaseException:
                if old is not None:
                    os.replace(old / path.name, path)  # the old output back where it was
                raise
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            if old is not None:
                with contextlib.suppress(OSError):
                    os.rmdir(old)  # empty once the old output is back (kept, never deleted, if it could not go back)
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def is_empty_dir(path: Path) -> bool:
    """A real folder (not a link) with nothing in it."""
    return path.is_dir() and not path.is_symlink() and not any(path.iterdir())


@contextlib.contextmanager
def resumable_dir(out: str | Path, overwrite: bool = False) -> Iterator[tuple[Path, bool]]:
    """The folder a resumable command writes in place, and continues when run again: yields (folder, fresh). With
    `overwrite` and an `out` that holds something, a fresh temporary folder that replaces `out` only once the body
    finishes; else `out` itself (made if missing) under its lock, and `fresh` says whether it was empty. The caller
    checks what an existing folder holds (its manifest) inside the body, under the lock."""
    out = Path(out)
    if overwrite and (out.exists() or out.is_symlink()) and not is_empty_dir(out):
        with atomic_dir(out, overwrite=True) as tmp:
            yield tmp, True
        return
    out.absolute().parent.mkdir(parents=True, exist_ok=True)
    with output_lock(out):  # one process at a time writes the folder
        yield out, not out.exists() or is_empty_dir(out)


@contextlib.contextmanager
def atomic_file(path: str | Path, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary file path beside `path`; it replaces `path` only if the body finishes."""
    path = check_new(path, overwrite, folder=False)
    path.absolute().parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.absolute().parent)
    os.close(fd)
    tmp = Path(name)
    give_default_mode(tmp)
    try:
        yield tmp
        give_default_mode(tmp)  # again: a writer may have replaced the file (safetensors writes a new one)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_json(path: str | Path) -> Any:
    """A JSON file's content; BadInput naming the file when it is not JSON text."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadInput(f"{path}: not a JSON file ({exc}); give the file cadiff wrote") from None


def write_json(path: str | Path, data: Any, overwrite: bool = True) -> Path:
    """Write `data` as indented JSON, atomically; ValueError (nothing written) naming the key of a NaN or infinity,
    which JSON cannot hold."""
    try:
        text = json.dumps(data, indent=2, default=_jsonable, allow_nan=False) + "\n"
    except ValueError:
        found = first_non_finite(data)
        if found is None:
            raise
        keys, value = found
        where = "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in keys).lstrip(".") or "the value"
        name = "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
        raise BadInput(f"{Path(path).name}: {where} is {name}; JSON has no NaN or infinity, so nothing was written: "
                       "fix what produced it (or record a missing value as null)") from None
    with atomic_file(path, overwrite) as tmp:
        tmp.write_text(text)
    return Path(path)


def first_non_finite(obj: Any) -> tuple[tuple, float] | None:
    """The keys leading to the first NaN or infinite number nested in `obj` (dicts, lists, tuples, arrays and tensors)
    and that number, else None."""
    if hasattr(obj, "tolist"):
        obj = obj.tolist()
    if isinstance(obj, numbers.Real) and not isinstance(obj, bool):
        return None if math.isfinite(obj) else ((), float(obj))
    children = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, (list, tuple)) else ()
    for key, value in children:
        found = first_non_finite(value)
        if found is not None:
            return (key, *found[0]), found[1]
    return None


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, (set, tuple)):
        return list(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot write {type(obj).__name__} as JSON")
