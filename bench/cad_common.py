"""Shared plumbing of the CAD benchmarks: options, loading, and writing a result section into docs/cad.md.

Run heavy benchmarks one at a time: `flock /tmp/cadiff-heavy.lock .venv/bin/python bench/cad_erase.py`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import common
from common import save_json  # noqa: F401  (re-exported for the scripts)

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "cad.md"
IMG = ROOT / "docs" / "img"


def options(description: str) -> argparse.ArgumentParser:
    p = common.options(description, DOC, IMG)
    return p


def load(args):
    import torch

    import cadiff
    from cadiff.shapes import load_evaluator

    torch.set_num_threads(args.threads)
    pipe = cadiff.load_pipeline(args.model, device=args.device)
    evaluator = load_evaluator(args.evaluator)
    return pipe, evaluator


def write_section(doc, name: str, markdown: str) -> None:
    """Replace (or append) this benchmark's section of `doc`."""
    common.write_section(doc, name, markdown, title="# CAD results")


def table(header: list[str], rows: list[list]) -> str:
    """A markdown table in this benchmark family's number format."""
    return common.table(header, rows, float_format="{:.2f}")
