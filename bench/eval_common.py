"""Shared plumbing of the evaluation benchmarks: their base class (sections of docs/evaluation.md), loading, and
their table format.

Run heavy benchmarks one at a time: `flock /tmp/cadiff-heavy.lock .venv/bin/python bench/run.py run eval_baselines`.
"""

from __future__ import annotations

import common
from common import ROOT, Benchmark

WORK = ROOT / "runs" / "bench-eval"


class EvalBenchmark(Benchmark):
    """An evaluation benchmark: its section goes to docs/evaluation.md; --work holds the evaluations' folders."""

    doc = ROOT / "docs" / "evaluation.md"
    title = "# Evaluation"

    def options(self, p) -> None:
        super().options(p)
        p.add_argument("--work", default=str(WORK), help="folder for the results folders of the evaluations")


def load(args):
    import torch

    import cadiff

    torch.set_num_threads(args.threads)
    return cadiff.load_pipeline(args.model, device=args.device)


def table(header: list[str], rows: list[list]) -> str:
    """A markdown table in this benchmark family's number format."""
    return common.table(header, rows, float_format="{:.3g}")
