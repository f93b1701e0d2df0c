"""The resumable evaluation runner: one image per prompt row with that row's seed, scored in batches.

A results folder holds run.json (what was run: model fingerprint, edit, prompts, sampling, metric versions and
settings), rows.csv (one line per finished row, appended after each batch), images/ (one PNG per row), and, when
every row is done, metrics.json and grids/ (one image grid per class). Running again on the same folder with the
same model, edit and settings continues where it stopped and never regenerates a finished row; a folder that
holds another run is refused, never mixed, and so is one another process is writing (it is locked while a run writes
it). Every input (seeds, row guidance, batch size, the folder) is checked before the folder is made.

Example:
    >>> import cadiff
    >>> from cadiff.evaluation import evaluate
    >>> pipe = cadiff.load_pipeline()
    >>> summary = evaluate(pipe, "shapes", "runs/eval-base", metrics=["shapes"])   # doctest: +SKIP
    >>> summary["metrics"]["shapes"]["accuracy"]["shape"]                          # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import math
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from cadiff.distributed import from_rank0, is_main, leading, stop_together, together
from cadiff.errors import BadInput
from cadiff.evaluation.metrics import ImageSource, Metric, build_metrics
from cadiff.evaluation.prompts import PromptRow, PromptSet, load_prompts
from cadiff.config import Config, option
from cadiff.io.files import (atomic_file, check_new, check_target, is_empty_dir, made_by_cadiff, resumable_dir,
                             write_json)

BASE_COLUMNS = ("index", "prompt", "seed", "class")
GRID_LIMIT = 64
MAX_SEED = 2**63 - 1  # the largest seed torch.Generator.manual_seed takes as itself


class ResultsMismatchError(BadInput):
    """The results folder holds another run (other model, edit, prompts or settings); nothing was mixed."""


def file_sha256(path: str | Path) -> str:
    """sha256 of a file (hex, first 16 characters), e.g. to record the mask file an edit came from."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def _identity(pipe, prompts: PromptSet, metrics: Sequence[Metric], steps: int, guidance: float,
              row_guidance: bool, edit: dict | None) -> dict[str, Any]:
    """Everything that decides the content of rows.csv and images/: equal identity, interchangeable rows."""
    from cadiff.models.loading import INFO_KEY, describe_model

    model = describe_model(pipe, None)
    scheduler = {k: v for k, v in pipe.scheduler.config.items() if k != INFO_KEY}  # steps, guidance: given below
    return {
        "model": {"fingerprint": model["fingerprint"], "pipeline": model["pipeline"], "dtype": model["dtype"]},
        "edit": edit,
        "prompts": {"digest": prompts.digest(), "rows": len(prompts)},
        "sampling": {"steps": steps, "guidance": guidance, "row_guidance": row_guidance,
                     "scheduler": type(pipe.scheduler).__name__,
                     "scheduler_config": json.loads(json.dumps(scheduler, default=str))},
        "metrics": {m.name: m.info() for m in metrics},
    }


def _differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: {a!r} there, {b!r} now")
    return out


def _parse_cell(text: str) -> Any:
    if text in ("True", "False"):
        return text == "True"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """The finished rows of a rows.csv (a last line cut by an interrupt is dropped), values parsed."""
    path = Path(path)
    if not path.is_file():
        return []
    text = path.read_text(encoding="utf-8")
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]  # an interrupted append: keep whole lines only
    reader = csv.DictReader(text.splitlines())
    header = reader.fieldnames or []
    return [{k: _parse_cell(v) for k, v in rec.items()} for rec in reader
            if None not in rec and len(rec) == len(header) and rec.get("index") not in (None, "")]


def _write_rows(path: Path, header: list[str], records: list[dict[str, Any]]) -> None:
    with atomic_file(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=header)
        writer.writeheader()
        writer.writerows(records)


def _append_rows(path: Path, header: list[str], records: list[dict[str, Any]]) -> None:
    new = not path.is_file()
    with open(path, "a", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=header)
        if new:
            writer.writeheader()
        writer.writerows(records)
        f.flush()
        os.fsync(f.fileno())


def _save_image(path: Path, image: np.ndarray) -> None:
    from PIL import Image

    with atomic_file(path) as tmp:
        Image.fromarray(image).save(tmp, format="PNG")


def row_guidance_of(row: PromptRow, default: float) -> float:
    """The row's own `evaluation_guidance` if it has one, else `default`."""
    text = row.extra.get("evaluation_guidance", "")
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise BadInput(f"row {row.index}: evaluation_guidance '{text}' is not a number >= 0")
    return value


def _generate(generate: Callable, pipe, batch: Sequence[PromptRow], steps: int, guidance: float,
              per_row: bool) -> np.ndarray:
    """The batch's images in row order; with `per_row`, one generate call per distinct row guidance."""
    groups: dict[float, list[int]] = {}
    for i, r in enumerate(batch):
        groups.setdefault(row_guidance_of(r, guidance) if per_row else guidance, []).append(i)
    out: np.ndarray | None = None
    for scale, members in groups.items():
        images = generate(pipe, [batch[i].prompt for i in members], [batch[i].seed for i in members],
                          steps=steps, guidance=scale, batch_size=len(members))
        if out is None:
            out = np.zeros((len(batch), *images.shape[1:]), images.dtype)
        out[members] = images
    return out


def _keep(out: Path, images: ImageSource, rows_csv: Path, header: list[str] | None, batch: Sequence[PromptRow],
          pictures: np.ndarray, built: Sequence[Metric]) -> list[str]:
    """Score a batch's pictures, save them and append their rows; returns the rows' header."""
    columns: dict[str, list] = {}
    for metric in built:
        columns.update(metric.score(pictures, batch))
    for r, picture in zip(batch, pictures):
        _save_image(images.path(r.index), picture)
    records = [{"index": r.index, "prompt": r.prompt, "seed": r.seed, "class": r.cls,
                **{k: v[i] for k, v in columns.items()}} for i, r in enumerate(batch)]
    header = header or list(records[0])
    _append_rows(rows_csv, header, records)
    return header


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_") or "all"


def _not_results(out: Path) -> ResultsMismatchError:
    return ResultsMismatchError(f"{out} exists and is not an evaluation results folder (no run.json written by "
                                "cadiff); choose another --out")


def check_seed(seed: Any, what: str) -> None:
    """ValueError unless `seed` is a whole number from 0 to MAX_SEED (what torch.Generator takes); `what` says whose."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise BadInput(f"{what}: seed {seed} is out of range; seeds are whole numbers from 0 to {MAX_SEED}")


def check_seeds(rows: Sequence[PromptRow], source: str = "") -> None:
    """`check_seed` on every row's seed, naming the first bad row."""
    for r in rows:
        check_seed(r.seed, f"{source}, row {r.index}" if source else f"row {r.index}")


def check_out(out: str | Path, overwrite: bool = False) -> Path:
    """Fail clearly, writing nothing, when `out` cannot take an evaluation: another process writes it; it is a file
    or a folder cadiff did not make (refused even with `overwrite`); it holds another cadiff command's run (unless
    `overwrite`); or it cannot be created. An empty folder is used as it is."""
    out = check_target(out)
    if is_empty_dir(out):
        return out
    if not (out.exists() or out.is_symlink()):
        return check_new(out)
    if overwrite:
        return check_new(out, overwrite=True)
    if not made_by_cadiff(out) or not (out / "run.json").is_file():
        raise _not_results(out)
    command = json.loads((out / "run.json").read_text()).get("command")
    if command != "evaluate":
        raise ResultsMismatchError(f"{out} holds a cadiff {command} run, not an evaluation; choose another --out, or "
                                   "pass --overwrite to replace it")
    return out


def _open_folder(out: Path, identity: dict) -> dict | None:
    """Check `out` (locked) again; return the previous run.json when resuming the same run, None when starting fresh."""
    check_out(out)
    if is_empty_dir(out) or not out.exists():
        return None
    previous = json.loads((out / "run.json").read_text())
    diff = _differences(previous.get("identity", {}), identity)
    if diff:
        shown = "; ".join(diff[:3]) + (f"; and {len(diff) - 3} more" if len(diff) > 3 else "")
        raise ResultsMismatchError(f"{out} holds another evaluation ({shown}); its results are kept and were not "
                                   "mixed: choose another --out, or pass --overwrite to replace it")
    return previous


def _grids(out: Path, rows: Sequence[PromptRow], images: ImageSource) -> list[str]:
    from cadiff.report.grids import image_grid

    (out / "grids").mkdir(exist_ok=True)
    written = []
    by_class: dict[str, list[int]] = {}
    for r in rows:
        by_class.setdefault(r.cls or "all", []).append(r.index)
    for cls, indices in by_class.items():
        name = f"grids/{_slug(cls)}.png"
        image_grid(images.load(indices[:GRID_LIMIT]), cols=8).save(out / name)
        written.append(name)
    return written


@dataclass(frozen=True)
class EvaluationConfig(Config):
    """What an evaluation scores and how its images are sampled."""

    metrics: tuple = option(("shapes",), "comma list of shapes, nudenet, clip, fid, lpips, object (default: shapes on "
                                         "the embedded model; required otherwise)")
    steps: int | None = option(None, "sampling steps (default: the model's)", low=1)
    guidance: float | None = option(None, "guidance scale (default: the model's)", low=0)
    batch_size: int = option(32, "images per pipeline call (default 32)", low=1)
    row_guidance: bool = option(False, "rows with an evaluation_guidance column value (I2P files) use it as their "
                                       "guidance")

    def __post_init__(self):
        self.check_bounds()
        if isinstance(self.metrics, str):
            object.__setattr__(self, "metrics", tuple(m.strip() for m in self.metrics.split(",") if m.strip()))
        object.__setattr__(self, "metrics", tuple(self.metrics))
        if not self.metrics:
            raise BadInput("no metric chosen; give at least one (--metrics shapes,clip, ...)")


def evaluate(pipe, prompts: PromptSet | str | Path, out: str | Path, config: EvaluationConfig | None = None, *,
             metric_options: dict[str, Any] | None = None, edit: dict[str, Any] | None = None,
             model_source: str | None = None, overwrite: bool = False,
             progress: Callable[[int], None] | None = None, **options) -> dict[str, Any]:
    """Generate one image per prompt row (its own seed) into `out`, score it, and return the metrics summary;
    resumes an interrupted run of the same evaluation in `out`, refuses a folder holding another (`overwrite`: runs
    afresh beside it and replaces it only once complete). `config` (default EvaluationConfig(); `options` set its
    fields: metrics, which may also be built Metric objects, steps, guidance, batch_size, row_guidance: rows with
    an `evaluation_guidance` (I2P files) use it instead of `guidance`). `progress(n)` is told, once every input is
    checked, of the rows resumed (maybe 0), then after every batch of the rows it finished."""
    from cadiff.models.generate import render
    from cadiff.models.loading import check_weights
    from cadiff.models.loading import resolve_sampling, source_name
    from cadiff.models.vocabulary import check_known_words
    from cadiff.io.runs import versions

    config = (config or EvaluationConfig()).with_options("evaluate()", **options)
    metrics, steps, guidance, batch_size = config.metrics, config.steps, config.guidance, config.batch_size
    row_guidance = config.row_guidance
    prompt_set = prompts if isinstance(prompts, PromptSet) else load_prompts(prompts)
    check_seeds(prompt_set.rows, prompt_set.source)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int):
        raise BadInput(f"batch_size must be a whole number of at least 1, got {batch_size!r}")
    if row_guidance:
        for r in prompt_set.rows:
            row_guidance_of(r, 0.0)
    if is_main():  # (several processes: rank 0's folder, which it locks, and no other rank touches)
        out = check_out(out, overwrite)
    check_known_words(pipe, list(dict.fromkeys(r.prompt for r in prompt_set.rows)))
    check_weights(pipe)
    built = [m for m in metrics if isinstance(m, Metric)]
    built += build_metrics([m for m in metrics if not isinstance(m, Metric)], metric_options)
    for metric in built:
        metric.check_rows(prompt_set.rows, prompt_set.source)
    steps, guidance = resolve_sampling(pipe, steps, guidance)
    identity = _identity(pipe, prompt_set, built, steps, guidance, row_guidance, edit)
    record = {"command": "evaluate", "identity": identity, "prompt_source": prompt_set.source,
              "seeds": [r.seed for r in prompt_set.rows], "model_source": source_name(model_source),
              "versions": versions(), "sessions": []}
    if not is_main():  # several processes: rank 0 keeps the folder; this rank renders its share of every batch
        return _follow(pipe, prompt_set, steps, guidance, batch_size, row_guidance)
    with leading() as tell, resumable_dir(out, overwrite) as (folder, fresh):
        previous = None if fresh else _open_folder(folder, identity)
        return _run(folder, previous or record, render, pipe, prompt_set, built, steps, guidance, batch_size,
                    row_guidance, progress, tell)


def _follow(pipe, prompt_set: PromptSet, steps: int, guidance: float, batch_size: int, row_guidance: bool) -> dict:
    """A rank other than 0 of a multi-process evaluation: the rows rank 0 has left to do, in its batches, rendered
    together (each rank its share of the images); rank 0 scores and writes them. Returns {} (rank 0 has the
    summary)."""
    from cadiff.models.generate import render

    done = set(from_rank0(None))
    todo = [r for r in prompt_set.rows if r.index not in done]
    for start in range(0, len(todo), batch_size):
        _generate(render, pipe, todo[start : start + batch_size], steps, guidance, row_guidance)
        stop_together(None)  # rank 0 has scored and written the batch (or failed: then this rank stops too)
    return {}


def _run(out: Path, record: dict, generate: Callable, pipe, prompt_set: PromptSet, built: Sequence[Metric],
         steps: int, guidance: float, batch_size: int, row_guidance: bool,
         progress: Callable[[int], None] | None, tell: Callable[[list[int]], None]) -> dict[str, Any]:
    """Generate and score the rows of `prompt_set` not yet in `out` (locked, checked): `record` is its run.json. A
    failure before the first row is finished removes what this call made in a fresh folder; after it, run.json says
    "stopped" and the rows stay for the next run to continue."""
    fresh = not record["sessions"]
    existed = out.exists()
    session = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "rows_reused": 0, "rows_generated": 0,
               "generate_seconds": 0.0, "metric_seconds": 0.0}
    try:
        return _fill(out, record, session, generate, pipe, prompt_set, built, steps, guidance, batch_size,
                     row_guidance, progress, tell)
    except BaseException:
        if fresh and not session["rows_generated"]:
            if existed:  # an empty folder the user gave: empty again
                for p in list(out.iterdir()):
                    if p.is_dir() and not p.is_symlink():
                        shutil.rmtree(p)
                    else:
                        p.unlink()
            else:
                shutil.rmtree(out, ignore_errors=True)
        elif record.get("status") == "running":
            record["status"] = "stopped"
            with contextlib.suppress(OSError, ValueError):  # the first failure is the one to report
                write_json(out / "run.json", record)
        raise


def _fill(out: Path, record: dict, session: dict, generate: Callable, pipe, prompt_set: PromptSet,
          built: Sequence[Metric], steps: int, guidance: float, batch_size: int, row_guidance: bool,
          progress: Callable[[int], None] | None, tell: Callable[[list[int]], None]) -> dict[str, Any]:
    identity = record["identity"]
    (out / "images").mkdir(parents=True, exist_ok=True)
    record["status"] = "running"
    write_json(out / "run.json", record)

    rows_csv = out / "rows.csv"
    images = ImageSource(out / "images")
    done = {int(r["index"]): r for r in read_rows(rows_csv) if images.path(int(r["index"])).is_file()}
    header: list[str] | None = None
    if done:
        header = list(next(iter(done.values())))
        _write_rows(rows_csv, header, sorted(done.values(), key=lambda r: r["index"]))
    elif rows_csv.exists():
        rows_csv.unlink()
    todo = [r for r in prompt_set.rows if r.index not in done]
    tell(sorted(done))  # several processes: the other ranks render the same batches
    if progress is not None:  # the checks passed, the work starts: the rows already done (maybe 0)
        progress(len(done))

    session["rows_reused"] = len(done)
    record["sessions"].append(session)
    for start in range(0, len(todo), batch_size):
        batch = todo[start : start + batch_size]
        t0 = time.perf_counter()
        pictures = _generate(generate, pipe, batch, steps, guidance, row_guidance)
        t1 = time.perf_counter()
        header = together(lambda: _keep(out, images, rows_csv, header, batch, pictures, built))
        session["rows_generated"] += len(batch)
        session["generate_seconds"] = round(session["generate_seconds"] + t1 - t0, 3)
        session["metric_seconds"] = round(session["metric_seconds"] + time.perf_counter() - t1, 3)
        write_json(out / "run.json", record)
        if progress is not None:
            progress(len(batch))

    table = sorted(read_rows(rows_csv), key=lambda r: r["index"])
    summary = {
        "rows": len(table),
        "prompts": {"source": prompt_set.source, **identity["prompts"]},
        "model": identity["model"],
        "edit": identity["edit"],
        "sampling": {k: v for k, v in identity["sampling"].items() if k != "scheduler_config"},
        "metrics": {m.name: {**m.info(), **m.summarize(table, images)} for m in built},
    }
    record["grids"] = _grids(out, prompt_set.rows, images)
    record["status"] = "complete"
    write_json(out / "metrics.json", summary)
    write_json(out / "run.json", record)
    return summary
