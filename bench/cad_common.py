"""Shared plumbing of the CAD benchmarks: options, loading, and writing a result section into docs/cad.md.

Run heavy benchmarks one at a time: `flock /tmp/cadiff-heavy.lock .venv/bin/python bench/cad_erase.py`.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "cad.md"
IMG = ROOT / "docs" / "img"


def options(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--model", default=None, help="pipeline folder (default: the embedded shapes model)")
    p.add_argument("--evaluator", default=None, help="evaluator folder (default: the shipped one)")
    p.add_argument("--quick", action="store_true", help="tiny sizes, for checking the script itself")
    p.add_argument("--doc", default=str(DOC), help="markdown file whose section is (re)written")
    p.add_argument("--img", default=str(IMG), help="folder for pictures")
    p.add_argument("--threads", type=int, default=2)
    return p


def load(args):
    import torch

    import cadiff
    from cadiff.shapes import load_evaluator

    torch.set_num_threads(args.threads)
    pipe = cadiff.load_pipeline(args.model)
    evaluator = load_evaluator(args.evaluator)
    return pipe, evaluator


def write_section(doc: str | Path, name: str, markdown: str) -> None:
    """Replace (or append) the block between <!-- bench:NAME --> and <!-- /bench:NAME --> in `doc`."""
    doc = Path(doc)
    text = doc.read_text() if doc.exists() else "# CAD results\n"
    begin, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    stamp = f"_Written by `bench/{name}.py` on {time.strftime('%Y-%m-%d %H:%M')}; command: `{' '.join(sys.argv)}`._"
    block = f"{begin}\n{stamp}\n\n{markdown.strip()}\n{end}"
    if begin in text and end in text:
        text = re.sub(re.escape(begin) + r".*?" + re.escape(end), lambda _m: block, text, flags=re.S)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(text)


def save_json(path: str | Path, data) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(data, indent=1, default=float) + "\n")


def table(header: list[str], rows: list[list]) -> str:
    """A markdown table; floats with 2 decimals."""
    fmt = lambda v: f"{v:.2f}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)
