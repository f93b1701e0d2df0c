"""What every metric adapter provides, and the helpers they share: optional imports and local weights.

Example:
    >>> from cadiff.evaluation.metrics.base import require
    >>> np = require("numpy", "metrics")
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from cadiff.errors import BadInput, MissingDependency, MissingFile
from cadiff.evaluation.prompts import PromptRow
from cadiff.io.files import first_non_finite


class MissingDependencyError(MissingDependency):
    """A metric's library is not installed; the message names the pip extra that brings it."""


def require(module: str, extra: str) -> Any:
    """Import `module`, or fail with 'pip install cadiff[extra]'."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(f"this metric needs the python package '{module.split('.')[0]}', which is not "
                                     f"installed: pip install 'cadiff[{extra}]'") from exc
    except Exception as exc:  # installed but broken, e.g. a torchvision built for another torch
        raise MissingDependencyError(f"the python package '{module.split('.')[0]}' is installed but cannot be imported "
                                     f"({exc}); reinstall it to match torch: pip install 'cadiff[{extra}]'") from exc


def version_of(distribution: str) -> str:
    """The installed version of a distribution, or 'not installed'."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def hf_folder(name_or_path: str | Path, what: str, flag: str) -> str:
    """A local folder for `name_or_path`: an existing folder, or a hub id already in the local HF cache (never
    downloads); FileNotFoundError naming what is missing otherwise."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return str(path)
    try:
        from huggingface_hub import snapshot_download

        return snapshot_download(str(name_or_path), local_files_only=True)
    except Exception:
        raise MissingFile(
            f"{what} weights '{name_or_path}' are neither a local folder nor in the local Hugging Face cache, and "
            f"cadiff never downloads: run `hf download {name_or_path}` where there is network, or pass {flag} DIR"
        ) from None


class Metric:
    """A metric adapter: per-image columns for rows.csv (`score`), a summary for metrics.json (`summarize`), and
    `info()` naming its library, version and settings."""

    name = "metric"
    library = ""

    def __init_subclass__(cls, **kwargs):
        """Every metric's `score` and `summarize` refuse NaN or infinite values (`check_finite_values`)."""
        super().__init_subclass__(**kwargs)
        for method in ("score", "summarize"):
            if method in vars(cls):
                setattr(cls, method, _finite_values(vars(cls)[method], per_image=method == "score"))

    def settings(self) -> dict[str, Any]:
        """The settings a reader needs to reproduce the numbers."""
        return {}

    def info(self) -> dict[str, Any]:
        """Library, version and settings, as recorded in metrics.json and run.json."""
        return {"library": self.library, "version": version_of(self.library) if self.library else "",
                "settings": self.settings()}

    def check_rows(self, rows: Sequence[PromptRow], source: str) -> None:
        """ValueError, before any image is generated, when the metric could score none of `rows` (read from
        `source`)."""

    def score(self, images: np.ndarray, rows: Sequence[PromptRow]) -> dict[str, list]:
        """Per-image values, one list per column (named '<metric>_<what>'), for images (N, H, W, 3) uint8."""
        return {}

    def summarize(self, table: list[dict[str, Any]], images: "ImageSource") -> dict[str, Any]:
        """The set-level numbers from all rows (and, for set metrics like FID, all images)."""
        return {}


def _finite_values(method, per_image: bool):
    """A Metric's `score` (`per_image`: its values are for the rows it is given) or `summarize` that refuses the NaN
    or infinite values it would return."""
    @functools.wraps(method)
    def checked(self, *args, **kwargs):
        values = method(self, *args, **kwargs)
        rows = (args[1] if len(args) > 1 else kwargs.get("rows")) if per_image else None
        check_finite_values(self.name, values, rows)
        return values

    return checked


def check_finite_values(metric: str, values: Any, rows: Sequence[PromptRow] | None = None) -> None:
    """ValueError naming the first NaN or infinite number among a metric's values: its per-image columns (`score`,
    with the `rows` they are for) or its summary (`summarize`)."""
    found = first_non_finite(values)
    if found is None:
        return
    path, value = found
    if rows is not None and len(path) > 1 and isinstance(path[1], int) and path[1] < len(rows):
        where = f"{path[0]} = {value} for the image of '{rows[path[1]].prompt}' (seed {rows[path[1]].seed})"
    else:
        where = f"{'.'.join(map(str, path))} = {value}"
    raise BadInput(f"the metric '{metric}' computed {where}, which is not a finite number: check its "
                   "weights and reference images (a set metric like FID needs at least 2 images)")


class ImageSource:
    """Reads the images of a results folder by row index (images/00000.png, ...)."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)

    def path(self, index: int) -> Path:
        return self.folder / f"{index:05d}.png"

    def load(self, indices: Sequence[int]) -> np.ndarray:
        from PIL import Image

        missing = [i for i in indices if not self.path(i).is_file()]
        if missing:
            raise MissingFile(f"{self.folder} lacks {len(missing)} images (first: {self.path(missing[0]).name})")
        return np.stack([np.asarray(Image.open(self.path(i)).convert("RGB")) for i in indices])
