"""The erase frontier over all 15 concepts: for each preserve variant and ratio of some cad_preserve sweeps, the mean
target accuracy after the edit against the mean worst kept accuracy, as a table and one plot (no measuring: it reads
the sweeps' JSONs). Writes the section `cad_frontier` of bench/results/cad-results.md:

    .venv/bin/python bench/cad_frontier.py --sweeps bench/results/cad_sweep_16_early.json \
        bench/results/cad_sweep_16_early_guard.json bench/results/cad_sweep_16_early_abs.json \
        bench/results/cad_sweep_16_early_guard_wide.json
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from common import figure_link, settings
from cad_common import CadBenchmark, goal_axes, save_figure, table


def frontier(sweeps: list[dict]) -> dict[str, list[tuple[float, float, float, int]]]:
    """variant -> [(ratio, mean target after, mean worst kept, concepts within one or two images of the goal)]."""
    cells = defaultdict(list)
    for sweep in sweeps:
        for key, m in sweep["results"].items():
            _, variant, ratio = key.split("/")
            cells[(variant, float(ratio))].append(m)
    out = defaultdict(list)
    for (variant, ratio), ms in sorted(cells.items()):
        n = len(ms)
        near = sum(m["target_after"] <= 0.10 and m["kept_min"] >= 0.90 for m in ms)
        out[variant].append((ratio, sum(m["target_after"] for m in ms) / n, sum(m["kept_min"] for m in ms) / n, near))
    return dict(out)


class CadFrontier(CadBenchmark):
    name = "cad_frontier"
    summary = "the erase frontier over all 15 concepts, from cad_preserve sweeps (reads their JSON, measures nothing)"

    def options(self, p) -> None:
        super().options(p)
        p.add_argument("--sweeps", nargs="+", help="JSONs written by bench/cad_preserve.py (required)")
        p.add_argument("--section", default="cad_frontier")

    def run(self, args) -> dict:
        if not args.sweeps:
            raise SystemExit("--sweeps JSON [JSON ...] is required: the cad_preserve sweeps to average")
        sweeps = [json.loads(Path(f).read_text()) for f in args.sweeps]
        windows = {s["settings"].get("at_steps", "all") for s in sweeps}
        if len(windows) != 1:
            raise SystemExit(f"the sweeps sum over different steps ({sorted(windows)}); give sweeps of one window")
        return {"window": windows.pop(), "frontier": frontier(sweeps), "settings": vars(args)}

    def report(self, results: dict, args) -> str:
        s = settings(results, args)
        rows = [[variant, f"{ratio:g}", target, kept, near]
                for variant, pts in results["frontier"].items() for ratio, target, kept, near in pts]
        return f"""### The erase frontier over all 15 concepts (objective on the {results["window"]} steps)

Each row averages the 15 concepts of one variant and ratio per row (sweeps {", ".join(f"`{Path(f).stem}`" for f in
s.sweeps)}; 72 screening images each). "near" counts concepts within one or two images of the goal (target
<= 0.10, worst kept >= 0.90). Up and to the left is worse; the goal is the bottom right corner.

{table(["variant", "ratio", "mean target after", "mean worst kept", "near"], rows)}

![erase frontier: mean target after against mean worst kept, a line per variant]({figure_link(args, f"{args.section}.png")})
"""

    def figures(self, results: dict, args) -> None:
        _plot(results["frontier"], Path(args.img) / f"{args.section}.png")


def _plot(lines: dict, path: Path) -> None:
    """Mean target after against mean worst kept, a line per variant labelled by ratio."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    goal_axes(ax)
    for variant, pts in lines.items():
        line, = ax.plot([k for _, _, k, _ in pts], [t for _, t, _, _ in pts], "-o", ms=4, label=variant)
        for ratio, t, k, _ in pts:
            ax.annotate(f"{ratio:g}", (k, t), fontsize=7, color=line.get_color(), xytext=(3, 3),
                        textcoords="offset points")
    ax.set_xlabel("mean worst kept (other concepts)")
    ax.set_ylabel("mean target after")
    ax.legend(fontsize=8)
    ax.set_title("CAD-Erase over 15 concepts (labels: ratio per row)", fontsize=10)
    save_figure(fig, path)


if __name__ == "__main__":
    CadFrontier().main()
