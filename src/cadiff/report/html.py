"""One self-contained HTML page for one or more run folders: every picture inlined, no network, no script.

For each run: what was run and with which settings; a calibrated erase's certificate (verdict, per-concept
accuracy before and after with n and 95 % interval, every screened setting) and frontier; a plain edit's
before/after accuracies and rounds; the pictures the command wrote (grids, frontier, attribution plots, concept
cards, per-class grids of an evaluation); attribution summaries per layer and per attention head; mask
statistics; every metric; and the provenance block (model fingerprint, mask, seeds, sampler, library versions).
Several runs given at once open with one table side by side. A run folder may come from someone else: every value
read from its files is shown as text (escaped; a number is formatted only once it is one), and only PNG files inside
the folder are inlined.

Example:
    >>> from cadiff.report.html import write_report
    >>> write_report(["runs/no-circle", "runs/esd-circle"], "compare.html")     # doctest: +SKIP
"""

from __future__ import annotations

import base64
import contextlib
import html
import json
from pathlib import Path
from typing import Any, Iterable, Sequence

from cadiff.errors import BadInput, MissingFile

REPORT = "report.html"
PNG = b"\x89PNG\r\n\x1a\n"  # the signature every inlined picture starts with
MAX_IMAGES = 24  # pictures per run (an evaluation may write one grid per class)
STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222;line-height:1.4}
h1{font-size:1.5em}h2{font-size:1.25em;border-bottom:1px solid #ccc;margin-top:2em}h3{font-size:1.05em}
table{border-collapse:collapse;margin:.5em 0 1em}td,th{border:1px solid #ddd;padding:3px 8px;text-align:left;
font-size:.9em}th{background:#f3f3f3}td.n{text-align:right;font-variant-numeric:tabular-nums}
figure{display:inline-block;margin:.5em 1em .5em 0;vertical-align:top}figcaption{font-size:.85em;color:#555}
img{image-rendering:pixelated;max-width:100%;border:1px solid #eee}.pass{color:#1a7f37;font-weight:bold}
.fail{color:#b42318;font-weight:bold}pre{background:#f7f7f7;padding:.6em;overflow-x:auto;font-size:.8em}
"""


def write_report(runs: Sequence[str | Path], out: str | Path, overwrite: bool = False) -> Path:
    """Write the page for `runs` to `out` (atomically; an existing file only with `overwrite`)."""
    from cadiff.io.files import atomic_file, check_new

    folders = [Path(r) for r in runs]
    for folder in folders:
        if not (folder / "run.json").is_file():
            raise MissingFile(f"{folder} is not a run folder (no run.json): give folders cadiff commands wrote")
    check_new(out, overwrite, folder=False)
    with atomic_file(out, overwrite=overwrite) as tmp:
        Path(tmp).write_text(render(folders), encoding="utf-8")
    return Path(out)


def render(folders: Sequence[Path]) -> str:
    runs = [_load(f) for f in folders]
    for r in runs:
        with _blame(r["folder"]):
            r["title"] = _title(r)
            r["headline"], r["section"] = _headline(r), _run_section(r)
    title = "cadiff report: " + ", ".join(r["title"] for r in runs)
    body = [f"<h1>{_e(title)}</h1>"]
    if len(runs) > 1:
        body += ["<h2>Side by side</h2>", _comparison(runs)]
    for r in runs:
        body += r["section"]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{_e(title)}</title><style>{STYLE}</style></head>\n<body>\n" + "\n".join(body)
            + "\n</body></html>\n")


@contextlib.contextmanager
def _blame(folder: Path):
    """A run file of an unexpected shape (a missing key, a list for a dict) as one ValueError naming the folder."""
    try:
        yield
    except (KeyError, TypeError, AttributeError, ValueError, IndexError) as exc:
        raise BadInput(f"{folder}: its run files are not as cadiff writes them ({type(exc).__name__}: {exc}); "
                       "report folders that cadiff commands wrote") from exc


def _inside(folder: Path, path: Path) -> bool:
    """Whether `path` is a plain file inside `folder` (a link out of the folder is not read)."""
    return path.is_file() and path.resolve().is_relative_to(folder.resolve())


def _load(folder: Path) -> dict[str, Any]:
    def read(path: Path):
        if not _inside(folder, path):
            return None
        try:
            value = json.loads(path.read_text())
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadInput(f"{path} is not JSON ({exc}); report folders that cadiff commands wrote") from None
        if not isinstance(value, dict):
            raise BadInput(f"{path} holds a {type(value).__name__}, not the object cadiff writes")
        return value

    return {"folder": folder, "run": read(folder / "run.json") or {}, "metrics": read(folder / "metrics.json"),
            "certificate": read(folder / "certificate.json"),
            "summaries": {p.name.removesuffix(".summary.json"): summary for p in sorted(folder.glob("*.summary.json"))
                          if (summary := read(p)) is not None}}


def _title(r: dict) -> str:
    run = r["run"]
    concepts = run.get("settings", {}).get("concepts") or []
    return " ".join([str(run.get("command", "run")), *map(str, concepts)]) + f" ({r['folder'].name})"


def _e(value: Any) -> str:
    """`value` as HTML text, safe in an element and in a quoted attribute."""
    return html.escape(str(value), quote=True)


def _real(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _num(value: Any, spec: str) -> str:
    """`value` formatted with `spec` when it is a number, else as escaped text (a file may hold anything)."""
    return format(value, spec) if _real(value) else _e(_fmt(value))


def _size(value: Any) -> float:
    """A sort key: the number, or a mass of a dict {"mass_positive": ...}; anything else counts as 0."""
    value = value.get("mass_positive") if isinstance(value, dict) else value
    return float(value) if _real(value) else 0.0


def _fmt(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return {True: "yes", False: "no", None: "–"}[value]
    if isinstance(value, float):
        return f"{value:.3f}".rstrip("0").rstrip(".") if abs(value) < 1e4 else f"{value:.4g}"
    if isinstance(value, (list, tuple)) and all(isinstance(v, (int, float)) for v in value) and len(value) <= 4:
        return "–".join(_fmt(v) for v in value)
    if isinstance(value, (dict, list)):
        return json.dumps(value)[:200]
    return str(value)


def table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """An HTML table; numbers right-aligned."""
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    lines = []
    for row in rows:
        cells = "".join(f"<td class=\"n\">{_e(_fmt(v))}</td>" if isinstance(v, (int, float)) and not isinstance(v, bool)
                        else f"<td>{_e(_fmt(v))}</td>" for v in row)
        lines.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(lines)}</tbody></table>"


def _image(path: Path, caption: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f"<figure><img src=\"data:image/png;base64,{data}\" alt=\"{_e(caption)}\">"
            f"<figcaption>{_e(caption)}</figcaption></figure>")


BEFORE_AFTER = "before (top) and after (bottom), same seeds"
GRID_CAPTIONS = {"erase": BEFORE_AFTER, "amplify": BEFORE_AFTER,
                 "generate": "one row per prompt, one column per seed",
                 "sae steer": "unsteered (top) and steered (bottom), same seeds",
                 "attack": "each attack's images on the edited model, one row per attack"}
CAPTIONS = {"frontier.png": "frontier: target accuracy against the worst kept share of every screened setting",
            "cards.png": "concept cards"}


def _is_png(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(len(PNG)) == PNG


def _pictures(folder: Path, command: str) -> list[str]:
    """The PNG files inside the folder, each captioned (grid.png by the command that drew it)."""
    order = ["grid.png", "frontier.png", "cards.png"]
    found = [folder / n for n in order]
    found += sorted(p for p in folder.glob("*.png") if p.name not in order)
    found += sorted((folder / "grids").glob("*.png"))
    found = [p for p in found if _inside(folder, p) and _is_png(p)]
    captions = {**CAPTIONS, "grid.png": GRID_CAPTIONS.get(command, "grid.png")}
    return [_image(p, captions.get(p.name, str(p.relative_to(folder)))) for p in found[:MAX_IMAGES]]


def _headline(r: dict) -> dict[str, Any]:
    """The numbers a side-by-side table shows: target after, worst kept, zeroed, seconds."""
    run, metrics, cert = r["run"], r["metrics"] or {}, r["certificate"]
    edit = run.get("edit", {})
    out = {"command": run.get("command"), "method": edit.get("method") or run.get("settings", {}).get("method"),
           "concepts": ", ".join(map(str, run.get("settings", {}).get("concepts") or [])),
           "target after": None, "worst kept": None, "zeroed": edit.get("zeroed"), "seconds": run.get("seconds")}
    if cert:
        out.update({"target after": cert["confirmation"]["target_max"], "worst kept": cert["confirmation"]["kept_min"],
                    "goal met": cert["passed"]})
    elif "attacks" in metrics:
        out.update({f"{a['attack']} success": a["edited"]["accuracy"] for a in metrics["attacks"]})
    elif "target_after" in metrics:
        out.update({"target after": metrics["target_after"], "worst kept": metrics["kept_min"]})
    return out


def _comparison(runs: list[dict]) -> str:
    rows = [r["headline"] for r in runs]
    keys = list(dict.fromkeys(k for row in rows for k in row))
    return table(["run", *keys], [[r["folder"].name, *[row.get(k) for k in keys]] for r, row in zip(runs, rows)])


def _run_section(r: dict) -> list[str]:
    run, folder = r["run"], r["folder"]
    out = [f"<h2>{_e(r['title'])}</h2>"]
    if r["certificate"]:
        out += _certificate(r["certificate"])
    elif r["metrics"] and "before" in r["metrics"] and "after" in r["metrics"]:
        out += _edit_metrics(r["metrics"])
    elif r["metrics"] and "attacks" in r["metrics"]:
        out += _attacks(r["metrics"])
    pictures = _pictures(folder, str(run.get("command")))
    if pictures:
        out += ["<h3>Pictures</h3>", "".join(pictures)]
    for name, summary in r["summaries"].items():
        out += _attribution(name, summary)
    per_parameter = run.get("edit", {}).get("per_parameter")
    if per_parameter:
        out += _mask(per_parameter, run["edit"])
    if r["metrics"] and not r["certificate"] and "attacks" not in r["metrics"]:
        out += ["<h3>Metrics</h3>", *_nested(r["metrics"])]
    out += _provenance(run)
    return out


OUTCOMES = {"proven": ("pass", "goal met, proven"), "met": ("fail", "goal met on point estimates, not proven"),
            "missed": ("fail", "goal not met")}


def _certificate(c: dict) -> list[str]:
    old = ("pass", "goal met") if c["passed"] is True else ("fail", "goal not met")  # a certificate without outcome
    kind, words = OUTCOMES.get(str(c.get("outcome")), old)
    verdict = f"<span class=\"{kind}\">{words}</span>"
    goal, confirm = c["goal"], c["probes"]["confirm"]
    seeds = [s for p in [confirm, *confirm.get("looks", [])] for s in p.get("seeds", [])]  # one probe or its looks
    seeds = [min(seeds), max(seeds)] if seeds and all(map(_real, seeds)) else seeds
    lines = [f"<p>Calibrated erase: {verdict} on {_e(_fmt(confirm['images']))} confirmation images (seeds "
             f"{_e(_fmt(seeds))}, used by no step of the search). Goal: target at most "
             f"{_num(goal['target'], '.0%')}, every kept concept at least {_num(goal['keep'], '.0%')} of its "
             f"accuracy. Judges: {_e(', '.join(str(j.get('judge')) for j in c.get('judges', [c['judge']]) if isinstance(j, dict)))}. Setting: <b>{_e(c['chosen']['label'])}</b> "
             f"({_e(_fmt(c['chosen']['zeroed']))} weights zeroed).</p>"]
    lines += [f"<p class=\"fail\">misses: {_e(m)}</p>" for m in c.get("misses", [])]
    rows = []
    for concept, v in c["confirmation"]["concepts"].items():
        a = v["after"]
        rows.append([concept, "target" if concept in c["targets"] else "keep", v["before"]["accuracy"],
                     a["accuracy"], a["n"], a["ci95"], v.get("kept")])
    lines += ["<h3>Confirmation</h3>",
              table(["concept", "role", "before", "after", "n", "95 % interval", "kept share"], rows)]
    proof = c["confirmation"].get("claims")
    if isinstance(proof, list):  # certificates that prove: every claim of every judge with its one-sided bound
        level = _num(c.get("confidence"), ".0%")
        lines += [f"<h3>Proof (proven at {level} confidence; {_e(_fmt(c['confirmation'].get('looks')))} of at most "
                  f"{_e(_fmt(c['confirmation'].get('looks_planned')))} looks, each bound one-sided at the error "
                  "spent on its look)</h3>",
                  "<p>a target is proven erased when the upper bound on its rate is at most the goal; a kept concept "
                  "is proven kept when the lower bound on its kept share is at least the goal</p>",
                  table(["judge", "concept", "role", "value", "bound", "n", "status", "images to prove"],
                        [[x.get("judge"), x.get("concept"), x.get("kind"), x.get("value"), x.get("bound"),
                          (x.get("after") or {}).get("n"), x.get("status"), x.get("images_to_prove")]
                         for x in proof if isinstance(x, dict)])]
    lines += [
              "<h3>Settings screened (in order)</h3>",
              table(["#", "setting", "target", "worst kept", "worst kept concept", "zeroed"],
                    [[p["order"], p["label"], p["target_max"], p["kept_min"], p["kept_min_concept"], p["zeroed"]]
                     for p in c["tried"]]),
              table(["time", "seconds"], [[k, v] for k, v in c.get("seconds", {}).items()])]
    return lines


def _edit_metrics(m: dict) -> list[str]:
    rows = [[c, m["before"][c], m["after"].get(c)] for c in m["before"]]
    out = ["<h3>Accuracy before and after</h3>",
           f"<p>target {_num(m['target_before'], '.2f')} → {_num(m['target_after'], '.2f')}; worst kept "
           f"{_num(m['kept_min'], '.0%')} ({_e(m['kept_min_concept'])}) on {_e(m.get('n_images', '?'))} images</p>",
           table(["concept", "before", "after"], rows)]
    if m.get("rounds"):
        out += ["<h3>Rounds</h3>", table(["round", "zeroed", "target after", "worst kept", "worst kept concept",
                                          "mask"],
                                         [[x["round"], x["zeroed"], x["target_after"], x["kept_min"],
                                           x["kept_min_concept"], x["mask"]] for x in m["rounds"]])]
    return out


def _attacks(m: dict) -> list[str]:
    rows = []
    for a in m["attacks"]:
        refs = "; ".join(f"{k} {_fmt(v['accuracy'])}" for k, v in a.get("references", {}).items())
        keep = [v for v in (a.get("keep") or {}).values() if _real(v)]
        rows.append([a["attack"], a["edited"]["accuracy"], a["edited"]["n"], a["edited"]["ci95"],
                     a["original"]["accuracy"], refs or None, min(keep) if keep else None, a.get("seconds")])
    return [f"<h3>Attack success for {_e(m['concept'])}</h3>",
            "<p>the share of each attack's images the judge reads as the concept, on the edited model and, as the "
            f"reference, on the original (judge: {_e(m.get('judge', {}).get('judge'))})</p>",
            table(["attack", "edited", "n", "95 % interval", "original", "other references", "worst kept share",
                   "seconds"], rows)]


def _attribution(name: str, s: dict) -> list[str]:
    layers = s.get("layers", {})
    top = sorted(layers.items(), key=lambda kv: -_size(kv[1]))[:12]
    out = [f"<h3>Attribution of {_e(name)}</h3>",
           f"<p>{_e(_fmt(s.get('n_positive')))} positive / {_e(_fmt(s.get('n_negative')))} negative components of "
           f"{_e(_fmt(s.get('n')))}; concentration of the positive mass: {_e(_fmt(s.get('concentration')))}</p>"]
    if top:
        cols = [k for k in top[0][1] if not isinstance(top[0][1][k], (dict, list))]
        out.append(table(["layer", *cols], [[n, *[v.get(k) for k in cols]] for n, v in top]))
    heads = s.get("heads") or {}
    if heads:
        best = sorted(heads.items(), key=lambda kv: -_size(kv[1]))[:12]
        out += ["<p>attention heads with the largest positive mass</p>",
                table(["head", "positive mass"], [[h, v if not isinstance(v, dict) else v.get("mass_positive")]
                                                   for h, v in best])]
    return out


def _mask(per_parameter: dict, edit: dict) -> list[str]:
    top = sorted(per_parameter.items(), key=lambda kv: -_size(kv[1]))[:12]
    return ["<h3>Mask</h3>", f"<p>{_e(_fmt(edit.get('zeroed')))} weights zeroed in {len(per_parameter)} parameters "
            f"(model {_e(edit.get('model_fingerprint'))})</p>", table(["parameter", "zeroed"], top)]


def _cell(value: Any) -> bool:
    """Whether a value fits one table cell: a scalar or a short list of numbers (an interval)."""
    return not isinstance(value, (dict, list)) or (len(value) <= 4 and all(isinstance(v, (int, float)) for v in value))


def _nested(d: dict, depth: int = 0) -> list[str]:
    """Dicts as tables: scalars as key / value rows, a dict of flat dicts as one table."""
    scalars = [[k, v] for k, v in d.items() if not isinstance(v, (dict, list))]
    out = [table(["key", "value"], scalars)] if scalars else []
    for k, v in d.items():
        if isinstance(v, dict) and v and all(isinstance(x, dict) and all(map(_cell, x.values())) for x in v.values()):
            cols = list(dict.fromkeys(c for x in v.values() for c in x if _cell(x[c])))
            out += [f"<p><b>{_e(k)}</b></p>", table([k, *cols], [[n, *[x.get(c) for c in cols]] for n, x in v.items()])]
        elif isinstance(v, dict) and depth < 2:
            out += [f"<p><b>{_e(k)}</b></p>", *_nested(v, depth + 1)]
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            cols = list(dict.fromkeys(c for x in v for c in x if _cell(x[c])))
            out += [f"<p><b>{_e(k)}</b></p>", table(cols, [[x.get(c) for c in cols] for x in v])]
    return out


def _provenance(run: dict) -> list[str]:
    settings = run.get("settings", {})
    model = run.get("model") or settings.get("model")
    rows = [["command", " ".join(map(str, run.get("argv", []))) or run.get("command")],
            ["started", run.get("started")], ["seconds", run.get("seconds")],
            ["model", json.dumps(model) if isinstance(model, dict) else model]]
    rows += [[f"version of {k}", v] for k, v in run.get("versions", {}).items()]
    return ["<h3>Provenance</h3>", table(["what", "value"], rows),
            "<details><summary>every setting (run.json)</summary><pre>"
            + _e(json.dumps(settings, indent=1, default=str)) + "</pre></details>"]
