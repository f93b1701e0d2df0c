"""Which preserve set protects the other concepts best: none, the other values of the target's attribute, or all 14
other concepts (their mean score, or their largest score per weight; `-guard`: with their negative scores taken as 0;
`-abs`: their absolute scores),
at several ratios, on the embedded model;
with the variant `random` (the same number of weights per row, chosen at random) as the untargeted control.

Scores are linear in the gradients, so every variant comes from the same 15 plain attributions:
    attribute: a_c - mean(a_o, o in c's attribute)    all: a_c - mean(a_o, o != c)    all-max: a_c - max(a_o, o != c)
    attribute-guard: a_c - mean(relu(a_o), o in c's attribute)    all-guard: a_c - max(relu(a_o), o != c)
    attribute-abs: a_c - mean(|a_o|, o in c's attribute)          all-abs: a_c - max(|a_o|, o != c)
(`cadiff.attribute(pipe, c, preserve=P)` computes the mean form; tests/attribution checks that it equals the difference).
Writes the section `cad_preserve` of bench/results/cad-results.md:

    flock /tmp/cadiff-heavy.lock .venv/bin/python bench/cad_preserve.py --concepts circle square star red striped
"""

from __future__ import annotations

import time
from pathlib import Path

from cadiff.editing.goal import KEEP_GOAL
from common import RESULTS, figure_link, others_of, settings
from cad_common import CadBenchmark, contrast, goal_axes, goal_text, load, meets_goal, save_figure, table

VARIANTS = ("plain", "attribute", "all", "all-max", "attribute-guard", "all-guard", "attribute-abs", "all-abs",
            "random")
DESCRIPTIONS = {
    "plain": "**plain** (no preserve set)",
    "attribute": "**attribute** (minus the mean score of the other values of the target's attribute: circle minus "
                 "the other five shapes)",
    "all": "**all** (minus the mean of all 14 other concepts: `preserve=[...]` with every other concept)",
    "all-max": "**all-max** (minus the largest of the 14 other scores of each weight: a weight is cut only if it "
               "matters more to the target than to any concept to keep)",
    "attribute-guard": "**attribute-guard** (as attribute, with the other values' negative scores taken as 0: a "
                       "weight that works against a concept to keep is not favoured for cutting)",
    "all-guard": "**all-guard** (as all-max, with negative scores taken as 0: a weight is cut only if it matters more "
                 "to the target than to any of the 14 other concepts, and never because it works against one)",
    "attribute-abs": "**attribute-abs** (as attribute, with the other values' absolute scores: a weight that moves a "
                     "concept to keep in either direction is spared)",
    "all-abs": "**all-abs** (as all-max, with absolute scores: a weight is cut only if it matters more to the target "
               "than to any of the 14 other concepts, in either direction)",
    "random": "**random** (control, no attribution: the same number of weights per row chosen at random, one draw "
              "per concept; what zeroing that many weights costs when nothing is targeted)",
}


def variant_scores(plain: dict, concept: str, variant: str):
    """The Attribution of `concept` under one preserve variant, built from the plain per-concept attributions."""
    if variant == "plain":
        return plain[concept]
    if variant == "random":
        import torch

        from cadiff.attribution import Attribution

        gen = torch.Generator().manual_seed(sorted(plain).index(concept))
        scores = {n: torch.rand(s.shape, generator=gen) for n, s in sorted(plain[concept].scores.items())}
        return Attribution(scores, {**plain[concept].metadata, "preserve": []})
    others = others_of(concept) if variant.startswith("attribute") else [o for o in plain if o != concept]
    if variant == "all-guard":  # the library's guard rule (cadiff.attribution.keep_rules), from the plain scores
        from cadiff.attribution.keep_rules import fold_maxima, with_keep_rule

        return with_keep_rule(plain[concept], fold_maxima(plain[o] for o in others), "guard")
    keep = "positive" if variant.endswith("-guard") else "magnitude" if variant.endswith("-abs") else "signed"
    return contrast(plain, concept, others, reduce="max" if variant.startswith("all-") else "mean", keep=keep)


class CadPreserve(CadBenchmark):
    name = "cad_preserve"
    summary = "which preserve set protects the other concepts best, at several ratios, on the embedded model"

    def options(self, p) -> None:
        super().options(p)
        p.add_argument("--components", default="linear")
        p.add_argument("--seeds", type=int, default=4)
        p.add_argument("--base-prompt", default="", help="base prompt of the erase objective (default: the empty prompt)")
        p.add_argument("--at-steps", default="all", help="steps the objective sums over (all, early, middle, final)")
        p.add_argument("--ratios", nargs="*", type=float, default=[0.02, 0.03, 0.04])
        p.add_argument("--repeats", type=int, default=2, help="evaluation repeats (36 images each)")
        p.add_argument("--concepts", nargs="*", default=None, help="default: all 15")
        p.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=VARIANTS)
        p.add_argument("--section", default="cad_preserve", help="name of the docs section (and JSON file) written")

    def saved(self) -> list[Path]:
        """This script's sweeps: cad_preserve, cad_sweep_*, cad_probe_* and cad_erase_16 (the 16-trajectory erase)."""
        return [p for p in sorted(RESULTS.glob("*.json"))
                if p.stem.startswith(("cad_preserve", "cad_sweep_", "cad_probe_")) or p.stem == "cad_erase_16"]

    def run(self, args) -> dict:
        """Evaluate every concept x variant x ratio."""
        import cadiff
        from cadiff.editing import ablated
        from cadiff.evaluation.accuracy import concept_accuracies, edit_metrics
        from cadiff.worlds.shapes.world import CONCEPTS

        pipe, evaluator = load(args)
        concepts = args.concepts or list(CONCEPTS)
        if args.quick:
            concepts, args.ratios, args.repeats, args.seeds = concepts[:1], args.ratios[:2], 1, 1
        before = concept_accuracies(pipe, evaluator, repeats=args.repeats)
        t0 = time.perf_counter()
        plain = dict(zip(CONCEPTS, cadiff.attribute(pipe, list(CONCEPTS), seeds=args.seeds, components=args.components,
                                                    base_prompt=args.base_prompt, at_steps=args.at_steps,
                                                    progress=False)))
        t_attr = time.perf_counter() - t0
        results = {}
        for concept in concepts:
            for variant in args.variants:
                attr = variant_scores(plain, concept, variant)
                for ratio in args.ratios:
                    mask = attr.select(ratio=ratio, scope="row")
                    with ablated(pipe, mask):
                        m = edit_metrics(before, concept_accuracies(pipe, evaluator, repeats=args.repeats), [concept])
                    results[f"{concept}/{variant}/{ratio}"] = {**m, "zeroed": len(mask), "goal": meets_goal(m)}
                    print(concept, variant, ratio, f"{m['target_after']:.2f} {m['kept_min']:.2f}", flush=True)
        return {"before": before, "results": results, "attribution_seconds": t_attr, "settings": vars(args)}

    def report(self, saved: dict, args) -> str:
        """The markdown section: every setting, the best per variant, the trade-off plot."""
        s = settings(saved, args)
        results, t_attr = saved["results"], saved["attribution_seconds"]
        concepts = list(dict.fromkeys(key.split("/")[0] for key in results))
        rows = []
        for key, m in results.items():
            concept, variant, ratio = key.split("/")
            rows.append([concept, variant, f"{float(ratio):g}", m["target_after"], m["others_after"],
                         f"{m['kept_min']:.2f} ({m['kept_min_concept']})", "yes" if m["goal"] else "no"])
        n = 36 * s.repeats
        met = [key for key, m in results.items() if m["goal"]]
        best = {}
        for key, m in results.items():
            concept, variant, _ = key.split("/")
            score = (m["goal"], m["kept_min"] >= KEEP_GOAL, -m["target_after"], m["others_after"])
            if variant not in best.get(concept, {}) or score > best[concept][variant][0]:
                best.setdefault(concept, {})[variant] = (score, key)
        summary = [[c, *[results[best[c][v][1]]["target_after"] if v in best[c] else "" for v in s.variants],
                    *[f"{results[best[c][v][1]]['kept_min']:.2f}" if v in best[c] else "" for v in s.variants]]
                   for c in concepts]
        ratios = ", ".join(f"{r:g}" for r in s.ratios)
        from cadiff.attribution.components import GROUPS

        named = s.components in GROUPS
        what = f"'{s.components}' weights" if named else "custom components"
        pattern = "" if named else f"\nComponents: the parameters whose names match `{s.components}`.\n"
        if s.base_prompt:
            pattern += f"\nBase prompt of the erase objective: \"{s.base_prompt}\" (instead of the empty prompt).\n"
        if s.at_steps != "all":
            from cadiff.models.steps import WINDOWS

            window = f" (t in [{WINDOWS[s.at_steps][0]}, {WINDOWS[s.at_steps][1]}])" if s.at_steps in WINDOWS else ""
            pattern += f"\nSteps the erase objective sums over: {s.at_steps}{window} of the 25 (instead of all).\n"
        md = f"""### Which preserve set ({what}, {s.seeds} trajectories, ratios {ratios} per row)
{pattern}
Variants, all from the same 15 plain attributions ({t_attr:.0f} s): {"; ".join(DESCRIPTIONS[v] for v in s.variants)}.
Accuracy over {n} images of the balanced design ({n // 6} per shape and colour: one image is
{6 / n:.2f}). Goal (issue 3): {goal_text()} of its accuracy.

{table(["concept", "variant", "ratio", "target after", "others (mean)", "worst kept", "goal met"], rows)}

Goal met by {len(met)} of {len(results)} settings{": " + ", ".join(met) if met else ""}.

Best setting per variant (goal first, then kept >= {KEEP_GOAL * 100:g} %, then lowest target): target after / worst kept.

{table(["concept", *[f"{v}: target" for v in s.variants], *[f"{v}: worst kept" for v in s.variants]], summary)}
"""
        if len(s.ratios) > 1 and (Path(args.img) / f"{args.section}_tradeoff.png").exists():  # (older runs drew none)
            md += f"""
Trade-off per concept (each point one ratio; the shaded corner is the goal):

![trade-off per concept]({figure_link(args, f"{args.section}_tradeoff.png")})
"""
        return md

    def figures(self, saved: dict, args) -> None:
        s = settings(saved, args)
        if len(s.ratios) > 1:
            concepts = list(dict.fromkeys(key.split("/")[0] for key in saved["results"]))
            _plot_tradeoff(saved["results"], concepts, s.variants, Path(args.img) / f"{args.section}_tradeoff.png")


def _plot_tradeoff(results: dict, concepts: list[str], variants: list[str], path: Path) -> None:
    """One panel per concept: target accuracy after the edit against the worst kept ratio, a line per variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(5, len(concepts))
    rows = -(-len(concepts) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 2.7 * rows), squeeze=False, sharex=True, sharey=True)
    for ax, concept in zip(axes.flat, concepts):
        goal_axes(ax)
        for variant in variants:
            pts = sorted((float(k.split("/")[2]), m) for k, m in results.items()
                         if k.startswith(f"{concept}/{variant}/"))
            line, = ax.plot([m["kept_min"] for _, m in pts], [m["target_after"] for _, m in pts], "-o", ms=3,
                            label=variant)
            for ratio, m in pts:
                ax.annotate(f"{ratio:g}", (m["kept_min"], m["target_after"]), fontsize=5, color=line.get_color())
        ax.set_title(concept, fontsize=9)
    for ax in axes.flat[len(concepts):]:
        ax.axis("off")
    for ax in axes[-1]:
        ax.set_xlabel("worst kept (other concepts)", fontsize=8)
    for ax in axes[:, 0]:
        ax.set_ylabel("target after", fontsize=8)
    axes.flat[0].legend(fontsize=7)
    fig.suptitle("CAD-Erase: target vs worst kept (labels: ratio per row)", fontsize=10)
    save_figure(fig, path)


if __name__ == "__main__":
    CadPreserve().main()
