"""Run folders: every command writes `run.json` (settings, seeds, model, versions) beside its artefacts,
into a temporary folder that takes the final name only when the run succeeds.

Example:
    >>> from cadiff.io.runs import run_folder
    >>> with run_folder("runs/demo", "generate", {"seed": 0}) as run:   # doctest: +SKIP
    ...     run.path / "grid.png"
"""

from __future__ import annotations

import contextlib
import platform
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from cadiff.distributed import is_main
from cadiff.io.files import atomic_dir, write_json


def versions() -> dict[str, str]:
    """Versions of Python and of every library a result depends on."""
    import diffusers
    import numpy
    import safetensors
    import torch
    import transformers

    from cadiff._version import __version__

    return {"cadiff": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "diffusers": diffusers.__version__, "transformers": transformers.__version__,
            "safetensors": safetensors.__version__, "numpy": numpy.__version__}


@dataclass
class Run:
    """An open run: write artefacts under `path`; `record` ends up in run.json, `metrics` in metrics.json."""

    path: Path
    record: dict[str, Any]
    metrics: dict[str, Any] = field(default_factory=dict)


@contextlib.contextmanager
def run_folder(out: str | Path, command: str, settings: dict[str, Any], overwrite: bool = False) -> Iterator[Run]:
    """Create the run folder `out` atomically; run.json gets the command, settings, versions and timing."""
    started = time.time()
    if not is_main():  # another rank of a multi-process run: it computes what rank 0 does, and rank 0 writes
        with tempfile.TemporaryDirectory() as tmp:
            yield Run(Path(tmp), {"command": command, "settings": settings})
        return
    with atomic_dir(out, overwrite=overwrite) as tmp:
        run = Run(tmp, {"command": command, "argv": sys.argv, "settings": settings, "versions": versions(),
                        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started))})
        yield run
        run.record["seconds"] = round(time.time() - started, 2)
        write_json(tmp / "run.json", run.record)
        if run.metrics:
            write_json(tmp / "metrics.json", run.metrics)
