"""The resumable evaluation runner: one image per prompt row with that row's seed, scored in batches.

A results folder holds run.json (what was run: model fingerprint, edit, prompts, sampling, metric versions and
settings), rows.csv (one line per finished row, appended after each batch), images/ (one PNG per row), and, when
every row is done, metrics.json and grids/ (one image grid per class). Running again on the same folder with the
same model, edit and settings continues where it stopped and never regenerates a finished row; a folder that
holds another run is refused, never mixed.

Example:
    >>> import cadiff
    >>> from cadiff.evaluation import evaluate
    >>> pipe = cadiff.load_pipeline()
    >>> summary = evaluate(pipe, "shapes", "runs/eval-base", metrics=["shapes"])   # doctest: +SKIP
    >>> summary["metrics"]["shapes"]["accuracy"]["shape"]                          # doctest: +SKIP
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from cadiff.evaluation.metrics import ImageSource, Metric, build_metrics
from cadiff.evaluation.prompts import PromptRow, PromptSet, load_prompts
from cadiff.files.io import atomic_dir, atomic_file, check_new, write_json
from cadiff.files.renames import renamed

BASE_COLUMNS = ("index", "prompt", "seed", "class")
GRID_LIMIT = 64


class ResultsMismatchError(ValueError):
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
        return float(text)
    except ValueError:
        raise ValueError(f"row {row.index}: evaluation_guidance '{text}' is not a number") from None


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


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_") or "all"


def _open_folder(out: Path, identity: dict) -> dict | None:
    """Prepare `out`; return the previous run.json when resuming the same run, None when starting fresh."""
    record_path = out / "run.json"
    if record_path.is_file():
        previous = json.loads(record_path.read_text())
        diff = _differences(previous.get("identity", {}), identity)
        if diff:
            shown = "; ".join(diff[:3]) + (f"; and {len(diff) - 3} more" if len(diff) > 3 else "")
            raise ResultsMismatchError(f"{out} holds another evaluation ({shown}); its results are kept and were not "
                                       "mixed: choose another --out, or pass --overwrite to replace it")
        return previous
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ResultsMismatchError(f"{out} exists and is not an evaluation results folder; choose another --out or "
                                   "pass --overwrite to replace it")
    return None


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


@renamed(num_inference_steps="steps", guidance_scale="guidance")
def evaluate(
    pipe,
    prompts: PromptSet | str | Path,
    out: str | Path,
    metrics: Sequence[str | Metric] = ("shapes",),
    metric_options: dict[str, Any] | None = None,
    steps: int | None = None,
    guidance: float | None = None,
    batch_size: int = 32,
    edit: dict[str, Any] | None = None,
    model_source: str | None = None,
    overwrite: bool = False,
    progress: Callable[[int], None] | None = None,
    row_guidance: bool = False,
) -> dict[str, Any]:
    """Generate one image per prompt row (its own seed) into `out`, score it, and return the metrics summary;
    resumes an interrupted run of the same evaluation in `out`, refuses a folder holding another (`overwrite`: runs
    afresh beside it and replaces it only once complete). `row_guidance`: rows with an `evaluation_guidance` (I2P
    files) use it instead of `guidance`. `progress(n)` is told, once every input is checked, of the rows resumed
    (maybe 0), then after every batch of the rows it finished."""
    from cadiff.models.generate import generate
    from cadiff.models.loading import resolve_sampling, source_name
    from cadiff.models.vocabulary import check_known_words
    from cadiff.files.runs import versions

    prompt_set = prompts if isinstance(prompts, PromptSet) else load_prompts(prompts)
    check_known_words(pipe, list(dict.fromkeys(r.prompt for r in prompt_set.rows)))
    built = [m for m in metrics if isinstance(m, Metric)]
    built += build_metrics([m for m in metrics if not isinstance(m, Metric)], metric_options)
    for metric in built:
        metric.check_rows(prompt_set.rows, prompt_set.source)
    steps, guidance = resolve_sampling(pipe, steps, guidance)
    identity = _identity(pipe, prompt_set, built, steps, guidance, row_guidance, edit)
    out = Path(out)
    if overwrite and out.exists():  # run afresh beside it; the old results go only once the new ones are complete
        with atomic_dir(out, overwrite=True) as tmp:
            return evaluate(pipe, prompt_set, tmp, built, None, steps, guidance, batch_size, edit,
                            model_source, False, progress, row_guidance)
    if not out.exists():
        check_new(out)  # a clear message for a place that cannot be written, before any work
    previous = _open_folder(out, identity)
    (out / "images").mkdir(parents=True, exist_ok=True)
    record = previous or {"command": "evaluate", "identity": identity, "prompt_source": prompt_set.source,
                          "seeds": [r.seed for r in prompt_set.rows],
                          "model_source": source_name(model_source), "versions": versions(), "sessions": []}
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
    if progress is not None:  # the checks passed, the work starts: the rows already done (maybe 0)
        progress(len(done))

    session = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "rows_reused": len(done), "rows_generated": 0,
               "generate_seconds": 0.0, "metric_seconds": 0.0}
    record["sessions"].append(session)
    for start in range(0, len(todo), batch_size):
        batch = todo[start : start + batch_size]
        t0 = time.perf_counter()
        pictures = _generate(generate, pipe, batch, steps, guidance, row_guidance)
        t1 = time.perf_counter()
        columns: dict[str, list] = {}
        for metric in built:
            columns.update(metric.score(pictures, batch))
        for r, picture in zip(batch, pictures):
            _save_image(images.path(r.index), picture)
        records = [{"index": r.index, "prompt": r.prompt, "seed": r.seed, "class": r.cls,
                    **{k: v[i] for k, v in columns.items()}} for i, r in enumerate(batch)]
        header = header or list(records[0])
        _append_rows(rows_csv, header, records)
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
        "edit": edit,
        "sampling": {k: v for k, v in identity["sampling"].items() if k != "scheduler_config"},
        "metrics": {m.name: {**m.info(), **m.summarize(table, images)} for m in built},
    }
    record["grids"] = _grids(out, prompt_set.rows, images)
    record["status"] = "complete"
    write_json(out / "metrics.json", summary)
    write_json(out / "run.json", record)
    return summary
