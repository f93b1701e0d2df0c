"""Plumbing every benchmark shares: the `Benchmark` base (declared settings, `run`, `report`), markdown tables,
JSON dumps, timing, and (re)writing one section of a doc.

Benchmarks run through `python bench/run.py` or as scripts (`python bench/NAME.py ...`); both import this module
as `from common import ...`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"  # every benchmark's JSON, and the lab notebook cad-results.md
IMG = ROOT / "docs" / "img"


def add_options(p: argparse.ArgumentParser, doc: Path, img: Path) -> None:
    """The options every benchmark takes: model, evaluator, quick mode, where the doc section and pictures go."""
    p.add_argument("--model", default=None, help="pipeline folder (default: the embedded shapes model)")
    p.add_argument("--evaluator", default=None, help="evaluator folder (default: the shipped one)")
    p.add_argument("--quick", action="store_true", help="tiny sizes, for checking the script itself")
    p.add_argument("--doc", default=None, help="markdown file whose section is (re)written (default: the one "
                                               f"holding the section, else {Path(doc).relative_to(ROOT)})")
    p.add_argument("--img", default=str(img), help="folder for pictures")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu", help="torch device of the model (timings in docs are on 2 CPU threads)")
    p.add_argument("--tag", default="", help="suffix of this run's JSON, doc section and pictures (e.g. dit), so a "
                                             "second model's run sits beside the first")


class Skip(Exception):
    """A saved result that `report` cannot render (e.g. written before the run saved what the section shows)."""


def require(results: dict, *keys: str) -> None:
    """Skip a saved result that lacks any of `keys` (older runs saved less than their section shows)."""
    if missing := [k for k in keys if k not in results]:
        raise Skip(f"saved before the run kept {', '.join(missing)}: run it again to render it")


def holder(section: str) -> Path | None:
    """The markdown file (docs/*.md or the lab notebook bench/results/*.md) that holds `section`, if any."""
    for doc in [*sorted((ROOT / "docs").glob("*.md")), *sorted(RESULTS.glob("*.md"))]:
        if f"<!-- bench:{section} -->" in doc.read_text():
            return doc
    return None


class Benchmark:
    """One benchmark: `options` declares its settings; `run` measures and returns the JSON-able results (saved as
    bench/results/<name>[_<tag>].json); `report` makes its doc section's markdown from the results alone (no model
    work). `main` runs, saves and writes; `render` rewrites the section from the saved JSON."""

    name = ""  # the JSON file and doc section (with --tag T: <name>_T)
    summary = ""  # one line, for `bench/run.py list` and --help
    doc: Path = RESULTS / "cad-results.md"  # where a new section goes; an existing one is rewritten where it is
    title = "# Results"  # the first line of `doc` if it does not exist yet
    img: Path = IMG

    def options(self, p: argparse.ArgumentParser) -> None:
        add_options(p, self.doc, self.img)

    def run(self, args) -> dict:
        raise NotImplementedError

    def report(self, results: dict, args) -> str | dict[str, str]:
        """The section's markdown ({section: markdown} for a benchmark that writes several). `args`: the parsed
        settings (the defaults when rendering: a saved run's own are in `results`), with `.json` the results' file,
        `.doc` and `.section` the file and the section being written."""
        raise NotImplementedError

    def figures(self, results: dict, args) -> None:
        """Pictures drawn from the results alone: after a run, and when rendering with --figures."""

    def section(self, args) -> str:
        return getattr(args, "section", None) or tagged(args, self.name)

    def path(self, args) -> Path:
        return RESULTS / f"{self.section(args)}.json"

    def section_of(self, path: Path) -> str:
        return path.stem

    def saved(self) -> list[Path]:
        """The JSON of every saved run (<name>.json, <name>_*.json)."""
        return [p for p in sorted(RESULTS.glob(f"{self.name}*.json"))
                if p.stem == self.name or p.stem.startswith(self.name + "_")]

    def parser(self) -> argparse.ArgumentParser:
        via_runner = Path(sys.argv[0]).name == "run.py"
        p = argparse.ArgumentParser(prog=f"run.py run {self.name}" if via_runner else None, description=self.summary)
        self.options(p)
        g = p.add_argument_group("rewrite the section from saved results, measuring nothing")
        g.add_argument("--report-only", action="store_true", help="from this run's saved JSON")
        g.add_argument("--from-json", "--render", metavar="JSON", help="from this JSON")
        g.add_argument("--figures", action="store_true", help="redraw the pictures made from the results too")
        return p

    def main(self, argv: list[str] | None = None) -> None:
        args = self.parser().parse_args(argv)
        if args.report_only or args.from_json:
            return self.render(argv)
        results = self.run(args)  # (its settings may be `vars(args)` itself: args gets .json and .section after)
        path = self.path(args)  # after the run, which may name its section (e.g. from the model's defaults)
        save_json(path, results)
        results = json.loads(path.read_text())  # the report sees what a later render will
        args.json, args.section = path, self.section(args)
        self.draw(results, args)
        self.write(results, args, args.section)

    def render(self, argv: list[str] | None = None) -> None:
        args = self.parser().parse_args(argv)
        try:
            self.render_file(Path(args.from_json) if args.from_json else self.path(args), args)
        except Skip as why:
            raise SystemExit(f"not rendered: {why}")

    def render_file(self, path: Path, args, append: bool = True) -> None:
        """Rewrite the section of one saved JSON (append=False: Skip it when no doc holds that section)."""
        args.json, args.section = Path(path), self.section_of(Path(path))
        results = json.loads(args.json.read_text())
        if args.figures:
            self.draw(results, args)
        self.write(results, args, args.section, append)

    def draw(self, results: dict, args) -> None:
        if getattr(args, "img", None):
            Path(args.img).mkdir(parents=True, exist_ok=True)
        self.figures(results, args)

    def write(self, results: dict, args, section: str, append: bool = True) -> None:
        """The report into --doc, else the doc that holds the section, else (append) this benchmark's doc."""
        args.doc = args.doc or holder(section) or (self.doc if append else None)
        if args.doc is None:
            raise Skip(f"no doc holds the section {section}")
        args.section = section
        text = self.report(results, args)
        for name, markdown in ({section: text} if isinstance(text, str) else text).items():
            write_section(args.doc, name, markdown, self.title)


def settings(results: dict, args) -> argparse.Namespace:
    """A saved run's settings (its parsed options, as its JSON keeps them) as attributes; those an older run did not
    save take the value of `args` (the defaults, when rendering)."""
    return argparse.Namespace(**{**vars(args), **results.get("settings", {})})


def figure_link(args, file: str) -> str:
    """How the doc being written links to the picture `file` of the --img folder (relative to the doc)."""
    return os.path.relpath(Path(args.img).resolve() / file, Path(args.doc).resolve().parent)


def tagged(args, name: str) -> str:
    """`name` with the run's --tag appended (cad_amplify -> cad_amplify_dit), or as it is without one."""
    return f"{name}_{args.tag}" if args.tag else name


def hardware(args) -> str:
    """Where a benchmark ran, for its text: '2 CPU threads' or the GPU's name."""
    if args.device == "cpu":
        return f"{args.threads} CPU threads"
    import torch

    return torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else args.device


def write_section(doc: str | Path, name: str, markdown: str, title: str = "# Results") -> None:
    """Replace (or append) the block between <!-- bench:NAME --> and <!-- /bench:NAME --> in `doc`."""
    doc = Path(doc)
    text = doc.read_text() if doc.exists() else title + "\n"
    begin, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    stamp = (f"_Written by `bench/{Path(sys.argv[0]).name}` on {time.strftime('%Y-%m-%d %H:%M')}; "
             f"command: `{' '.join(sys.argv)}`._")
    block = f"{begin}\n{stamp}\n\n{markdown.strip()}\n{end}"
    if begin in text and end in text:
        text = re.sub(re.escape(begin) + r".*?" + re.escape(end), lambda _m: block, text, flags=re.S)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(text)


def others_of(concept: str) -> list[str]:
    """The other values of the concept's attribute on the shapes model (circle -> the other five shapes)."""
    from cadiff.worlds.shapes import ATTRIBUTES, attribute_of

    return [o for o in ATTRIBUTES[attribute_of(concept)] if o != concept]


def save_json(path: str | Path, data) -> None:
    """`data` as JSON; numpy and torch scalars as the Python numbers they hold (ints stay ints)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(data, indent=1, default=lambda v: v.item() if hasattr(v, "item") else float(v))
                          + "\n")


def table(header: list[str], rows: list[list], float_format: str = "{:.2f}") -> str:
    """A markdown table; floats formatted with `float_format`, None shown as a dash."""
    def fmt(v):
        return float_format.format(v) if isinstance(v, float) else ("–" if v is None else str(v))

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


class Timer:
    """`with Timer() as t: ...` then t.seconds."""

    def __enter__(self):
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start
