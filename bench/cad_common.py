"""Shared plumbing of the CAD benchmarks: their base class (sections in the lab notebook
bench/results/cad-results.md), loading, the goal's helpers, and plots.

Run heavy benchmarks one at a time: `flock /tmp/cadiff-heavy.lock .venv/bin/python bench/run.py run cad_erase`.
"""

from __future__ import annotations

import common
from common import RESULTS, Benchmark

DOC = RESULTS / "cad-results.md"  # the lab notebook; docs/cad.md is the curated page


class CadBenchmark(Benchmark):
    """A CAD benchmark: its section goes to the lab notebook."""

    doc = DOC
    title = "# CAD results"


def load(args):
    import torch

    import cadiff
    from cadiff.evaluation.judges import WorldJudge

    torch.set_num_threads(args.threads)
    pipe = cadiff.load_pipeline(args.model, device=args.device)
    return pipe, WorldJudge(pipe, path=args.evaluator)  # the judge the accuracy engine counts with


def table(header: list[str], rows: list[list]) -> str:
    """A markdown table in this benchmark family's number format."""
    return common.table(header, rows, float_format="{:.2f}")


def meets_goal(m: dict) -> bool:
    """The erase goal (`cadiff.editing.goal.Goal`) for edit_metrics output."""
    from cadiff.editing.goal import Goal

    return Goal().meets(m["target_after"], m["kept_min"])


def goal_text() -> str:
    """The erase goal in words, from the library's numbers: 'target <= 0.05 and every other concept >= 95 %'."""
    from cadiff.editing.goal import GOAL_TARGET, KEEP_GOAL

    return f"target <= {GOAL_TARGET:g} and every other concept >= {KEEP_GOAL * 100:g} %"


def window_label(at_steps: str) -> str:
    """The heading suffix naming the steps an erase objective summed over ("" for all steps)."""
    return "" if at_steps == "all" else f", objective on the {at_steps} steps"


def goal_axes(ax) -> None:
    """Axes of a target-after vs worst-kept plot: both in [0, 1], a grid, and the erase goal's corner shaded."""
    import matplotlib.pyplot as plt

    from cadiff.editing.goal import GOAL_TARGET, KEEP_GOAL

    ax.add_patch(plt.Rectangle((KEEP_GOAL, -0.05), 1.05 - KEEP_GOAL, GOAL_TARGET + 0.05, color="tab:green", alpha=0.2,
                               lw=0))
    ax.set_xlim(-0.05, 1.05)
    ax.set_ylim(-0.05, 1.05)
    ax.grid(alpha=0.3)


def save_figure(fig, path) -> None:
    """Lay out, write (110 dpi) and close a matplotlib figure."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def contrast(plain: dict, concept: str, others: list[str], reduce: str = "mean", keep: str = "signed"):
    """The Attribution of `concept` minus the mean (or, reduce="max", the per-weight largest) of the plain scores of
    `others`: a preserve-set score built from plain per-concept attributions (scores are linear in the gradients;
    `cadiff.attribute(pipe, c, preserve=others)` computes the mean form in one pass, the library's guard rule is
    `cadiff.attribution.keep_rules`).

    `keep` says what of the others' scores counts: "signed" (as they are), "positive" (negative ones taken as 0, so a
    weight is never favoured for cutting because it works against a concept to keep) or "magnitude" (their absolute
    value: cutting a weight that moves a concept to keep in either direction costs)."""
    import torch

    from cadiff.attribution import Attribution

    transform = {"signed": lambda t: t, "positive": lambda t: t.clamp(min=0), "magnitude": torch.abs}[keep]
    base = plain[concept]
    if reduce == "max":
        scores = {n: s - torch.stack([transform(plain[o].scores[n]) for o in others]).amax(0)
                  for n, s in base.scores.items()}
    else:
        scores = {n: s - sum(transform(plain[o].scores[n]) for o in others) / len(others)
                  for n, s in base.scores.items()}
    return Attribution(scores, {**base.metadata, "preserve": others})
