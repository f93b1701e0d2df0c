"""Shared plumbing of the evaluation benchmarks: options, loading, timing, and writing a section of docs/evaluation.md.

Run heavy benchmarks one at a time: `flock /tmp/cadiff-heavy.lock .venv/bin/python bench/eval_baselines.py`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import common
from common import RESULTS, Timer, save_json  # noqa: F401  (re-exported for the scripts)

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "evaluation.md"
IMG = ROOT / "docs" / "img"
WORK = ROOT / "runs" / "bench-eval"


def options(description: str) -> argparse.ArgumentParser:
    p = common.options(description, DOC, IMG)
    p.add_argument("--work", default=str(WORK), help="folder for the results folders of the evaluations")
    return p


def load(args):
    import torch

    import cadiff

    torch.set_num_threads(args.threads)
    return cadiff.load_pipeline(args.model, device=args.device)


def write_section(doc, name: str, markdown: str) -> None:
    """Replace (or append) this benchmark's section of `doc`."""
    common.write_section(doc, name, markdown, title="# Evaluation")


def table(header: list[str], rows: list[list]) -> str:
    """A markdown table in this benchmark family's number format."""
    return common.table(header, rows, float_format="{:.3g}")
