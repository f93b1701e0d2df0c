"""Plumbing every benchmark shares: markdown tables, JSON dumps, timing, and (re)writing one section of a doc.

Benchmarks run as scripts from this folder, so they import it as `from common import ...`.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"  # every benchmark's JSON


def options(description: str, doc: Path, img: Path) -> argparse.ArgumentParser:
    """The options every benchmark takes: model, evaluator, quick mode, where the doc section and pictures go."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--model", default=None, help="pipeline folder (default: the embedded shapes model)")
    p.add_argument("--evaluator", default=None, help="evaluator folder (default: the shipped one)")
    p.add_argument("--quick", action="store_true", help="tiny sizes, for checking the script itself")
    p.add_argument("--doc", default=str(doc), help="markdown file whose section is (re)written")
    p.add_argument("--img", default=str(img), help="folder for pictures")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu", help="torch device of the model (timings in docs are on 2 CPU threads)")
    p.add_argument("--tag", default="", help="suffix of this run's JSON, doc section and pictures (e.g. dit), so a "
                                             "second model's run sits beside the first")
    return p


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
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(data, indent=1, default=float) + "\n")


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
