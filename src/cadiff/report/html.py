"""One self-contained HTML page for one or more run folders: every picture inlined, no network, no script.

For each run: what was run and with which settings; a calibrated erase's certificate (verdict, per-concept
accuracy before and after with n and 95 % interval, every screened setting) and frontier; a plain edit's
before/after accuracies and rounds; the pictures the command wrote (grids, frontier, attribution plots, concept
cards, per-class grids of an evaluation); attribution summaries per layer and per attention head; mask
statistics; every metric; and the provenance block (model fingerprint, mask, seeds, sampler, library versions).
Several runs given at once open with one table side by side.

Example:
    >>> from cadiff.report.html import write_report
    >>> write_report(["runs/no-circle", "runs/esd-circle"], "compare.html")     # doctest: +SKIP
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any, Iterable, Sequence

REPORT = "report.html"
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
    from cadiff.files.io import atomic_file, check_new

    folders = [Path(r) for r in runs]
    for folder in folders:
        if not (folder / "run.json").is_file():
            raise FileNotFoundError(f"{folder} is not a run folder (no run.json): give folders cadiff commands wrote")
    check_new(out, overwrite)
    with atomic_file(out, overwrite=overwrite) as tmp:
        Path(tmp).write_text(render(folders), encoding="utf-8")
    return Path(out)


def render(folders: Sequence[Path]) -> str:
    runs = [_load(f) for f in folders]
    title = "cadiff report: " + ", ".join(_title(r) for r in runs)
    body = [f"<h1>{_e(title)}</h1>"]
    if len(runs) > 1:
        body += ["<h2>Side by side</h2>", _comparison(runs)]
    for r in runs:
        body += _run_section(r)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{_e(title)}</title><style>{STYLE}</style></head>\n<body>\n" + "\n".join(body)
            + "\n</body></html>\n")


def _load(folder: Path) -> dict[str, Any]:
    def read(name: str):
        path = folder / name
        return json.loads(path.read_text()) if path.is_file() else None

    return {"folder": folder, "run": read("run.json") or {}, "metrics": read("metrics.json"),
            "certificate": read("certificate.json"),
            "summaries": {p.name.removesuffix(".summary.json"): json.loads(p.read_text())
                          for p in sorted(folder.glob("*.summary.json"))}}


def _title(r: dict) -> str:
    run = r["run"]
    concepts = run.get("settings", {}).get("concepts") or []
    return " ".join([str(run.get("command", "run")), *map(str, concepts)]) + f" ({r['folder'].name})"


def _e(value: Any) -> str:
    return html.escape(str(value))


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


def _pictures(folder: Path) -> list[str]:
    order = ["grid.png", "frontier.png", "cards.png"]
    found = [folder / n for n in order if (folder / n).is_file()]
    found += sorted(p for p in folder.glob("*.png") if p.name not in order)
    found += sorted((folder / "grids").glob("*.png")) if (folder / "grids").is_dir() else []
    captions = {"grid.png": "before (top) and after (bottom), same seeds" , "frontier.png":
                "frontier: target accuracy against the worst kept share of every screened setting",
                "cards.png": "concept cards"}
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
    rows = [_headline(r) for r in runs]
    keys = list(dict.fromkeys(k for row in rows for k in row))
    return table(["run", *keys], [[r["folder"].name, *[row.get(k) for k in keys]] for r, row in zip(runs, rows)])


def _run_section(r: dict) -> list[str]:
    run, folder = r["run"], r["folder"]
    out = [f"<h2>{_e(_title(r))}</h2>"]
    if r["certificate"]:
        out += _certificate(r["certificate"])
    elif r["metrics"] and "before" in r["metrics"] and "after" in r["metrics"]:
        out += _edit_metrics(r["metrics"])
    elif r["metrics"] and "attacks" in r["metrics"]:
        out += _attacks(r["metrics"])
    pictures = _pictures(folder)
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


def _certificate(c: dict) -> list[str]:
    verdict = ("<span class=\"pass\">goal met</span>" if c["passed"] else "<span class=\"fail\">goal not met</span>")
    goal = c["goal"]
    lines = [f"<p>Calibrated erase: {verdict} on {c['probes']['confirm']['images']} confirmation images (seeds "
             f"{_fmt(c['probes']['confirm']['seeds'])}, used by no step of the search). Goal: target at most "
             f"{goal['target']:.0%}, every kept concept at least {goal['keep']:.0%} of its accuracy. Judge: "
             f"{_e(c['judge'].get('judge'))}. Setting: <b>{_e(c['chosen']['label'])}</b> "
             f"({c['chosen']['zeroed']} weights zeroed).</p>"]
    lines += [f"<p class=\"fail\">misses: {_e(m)}</p>" for m in c.get("misses", [])]
    rows = []
    for concept, v in c["confirmation"]["concepts"].items():
        a = v["after"]
        rows.append([concept, "target" if concept in c["targets"] else "keep", v["before"]["accuracy"],
                     a["accuracy"], a["n"], a["ci95"], v.get("kept")])
    lines += ["<h3>Confirmation</h3>",
              table(["concept", "role", "before", "after", "n", "95 % interval", "kept share"], rows),
              "<h3>Settings screened (in order)</h3>",
              table(["#", "setting", "target", "worst kept", "worst kept concept", "zeroed"],
                    [[p["order"], p["label"], p["target_max"], p["kept_min"], p["kept_min_concept"], p["zeroed"]]
                     for p in c["tried"]]),
              table(["time", "seconds"], [[k, v] for k, v in c.get("seconds", {}).items()])]
    return lines


def _edit_metrics(m: dict) -> list[str]:
    rows = [[c, m["before"][c], m["after"].get(c)] for c in m["before"]]
    out = ["<h3>Accuracy before and after</h3>",
           f"<p>target {m['target_before']:.2f} → {m['target_after']:.2f}; worst kept {m['kept_min']:.0%} "
           f"({_e(m['kept_min_concept'])}) on {m.get('n_images', '?')} images</p>",
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
        refs = "; ".join(f"{k} {v['accuracy']:.2f}" for k, v in a.get("references", {}).items())
        rows.append([a["attack"], a["edited"]["accuracy"], a["edited"]["n"], a["edited"]["ci95"],
                     a["original"]["accuracy"], refs or None, min(a["keep"].values()) if a.get("keep") else None,
                     a.get("seconds")])
    return [f"<h3>Attack success for {_e(m['concept'])}</h3>",
            "<p>the share of each attack's images the judge reads as the concept, on the edited model and, as the "
            f"reference, on the original (judge: {_e(m.get('judge', {}).get('judge'))})</p>",
            table(["attack", "edited", "n", "95 % interval", "original", "other references", "worst kept share",
                   "seconds"], rows)]


def _attribution(name: str, s: dict) -> list[str]:
    layers = s.get("layers", {})
    top = sorted(layers.items(), key=lambda kv: -kv[1].get("mass_positive", 0))[:12]
    out = [f"<h3>Attribution of {_e(name)}</h3>",
           f"<p>{s.get('n_positive')} positive / {s.get('n_negative')} negative components of {s.get('n')}; "
           f"concentration of the positive mass: {_e(_fmt(s.get('concentration')))}</p>"]
    if top:
        cols = [k for k in top[0][1] if not isinstance(top[0][1][k], (dict, list))]
        out.append(table(["layer", *cols], [[n, *[v.get(k) for k in cols]] for n, v in top]))
    heads = s.get("heads") or {}
    if heads:
        best = sorted(heads.items(), key=lambda kv: -float(kv[1] if not isinstance(kv[1], dict) else
                                                           kv[1].get("mass_positive", 0)))[:12]
        out += ["<p>attention heads with the largest positive mass</p>",
                table(["head", "positive mass"], [[h, v if not isinstance(v, dict) else v.get("mass_positive")]
                                                   for h, v in best])]
    return out


def _mask(per_parameter: dict, edit: dict) -> list[str]:
    top = sorted(per_parameter.items(), key=lambda kv: -kv[1])[:12]
    return ["<h3>Mask</h3>", f"<p>{edit.get('zeroed')} weights zeroed in {len(per_parameter)} parameters "
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
