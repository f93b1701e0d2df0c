"""CAD-Erase in rounds on the embedded model, all 15 concepts: each round re-scores the model with the mask so far
zeroed and adds the top `--ratio` per row of the new scores (`cadiff.erase(..., rounds=N)`).

Writes the section `cad_rounds` of bench/results/cad-results.md. Run:
    flock /tmp/cadiff-heavy.lock .venv/bin/python bench/cad_rounds.py --components linear --ratio 0.02 --rounds 2
"""

from __future__ import annotations

import json
import time
from functools import partial
from pathlib import Path

from cadiff.attribution.attribute import PRESERVE_RULES
from cadiff.editing.goal import KEEP_GOAL
from common import others_of, settings
from cad_common import CadBenchmark, goal_text, load, meets_goal, table, window_label


def hurt_concepts(run: dict) -> dict[str, list[str]]:
    """For each target of an earlier run of this script, the other concepts that did not keep what the erase goal
    asks (`cadiff.editing.goal.Goal`) of their accuracy."""
    from cadiff.editing.goal import Goal
    from cadiff.evaluation.accuracy import kept_shares

    out = {}
    for target, m in run["results"].items():
        shares = kept_shares(m["before"], m["after"], [o for o in m["after"] if o != target])
        out[target] = [o for o, share in shares.items() if not Goal().keeps(share)]
    return out


class CadRounds(CadBenchmark):
    name = "cad_rounds"
    summary = "CAD-Erase in rounds, all 15 concepts: each round re-scores the model with the mask so far zeroed"

    def options(self, p) -> None:
        super().options(p)
        p.add_argument("--components", default="linear")
        p.add_argument("--ratio", type=float, default=0.02, help="per-row ratio added in each round")
        p.add_argument("--rounds", type=int, default=2)
        p.add_argument("--seeds", type=int, default=4)
        p.add_argument("--at-steps", default="all", help="steps the objective sums over (all, early, middle, final)")
        keep = p.add_mutually_exclusive_group()
        keep.add_argument("--preserve", action="store_true", help="score against the other values of the attribute")
        keep.add_argument("--preserve-all", action="store_true", help="score against all 14 other concepts")
        keep.add_argument("--preserve-hurt", metavar="JSON",
                          help=f"score against the concepts this earlier run of the script hurt (kept < "
                               f"{KEEP_GOAL * 100:g} %%) for each target; targets it hurt nothing for are skipped")
        p.add_argument("--preserve-rule", choices=PRESERVE_RULES, default="mean", help="how the preserve set counts")
        p.add_argument("--concepts", nargs="*", default=None, help="default: all 15")
        p.add_argument("--repeats", type=int, default=1, help="evaluation repeats (36 images each)")
        p.add_argument("--eval-seed", type=int, default=1000, help="first evaluation seed (fresh images: e.g. 50000)")
        p.add_argument("--every-round", action="store_true",
                       help="also measure the model after every earlier round (rounds are not monotone)")
        p.add_argument("--section", default="cad_rounds", help="name of the docs section (and JSON file) written")

    def run(self, args) -> dict:
        import cadiff
        from cadiff.editing import ablated
        from cadiff.evaluation.accuracy import concept_accuracies, edit_metrics
        from cadiff.worlds.shapes.world import CONCEPTS

        pipe, evaluator = load(args)
        concepts = args.concepts or (["circle", "red"] if args.quick else list(CONCEPTS))
        if args.quick:
            args.seeds = 1
        evaluate = partial(concept_accuracies, pipe, evaluator, repeats=args.repeats, seed=args.eval_seed)
        before = evaluate()
        hurt = hurt_concepts(json.loads(Path(args.preserve_hurt).read_text())) if args.preserve_hurt else {}
        if args.preserve_hurt:
            concepts = [c for c in concepts if hurt.get(c)]
        results = {}
        for concept in concepts:
            keep = (hurt[concept] if args.preserve_hurt else others_of(concept) if args.preserve
                    else [o for o in CONCEPTS if o != concept] if args.preserve_all else None)
            earlier, measuring = [], [0.0]  # per-round metrics; seconds spent measuring them

            def measure(k, so_far, concept=concept):
                if args.every_round and k < args.rounds:
                    t = time.perf_counter()
                    with ablated(pipe, so_far):
                        earlier.append({**edit_metrics(before, evaluate(), [concept]), "zeroed": len(so_far)})
                    measuring[0] += time.perf_counter() - t

            t0 = time.perf_counter()
            result = cadiff.erase(pipe, concept, cadiff.CADConfig(), preserve=keep, ratio=args.ratio,
                                  rounds=args.rounds, seeds=args.seeds, components=args.components,
                                  at_steps=args.at_steps, preserve_rule=args.preserve_rule if keep else "mean",
                                  progress=False, on_step=measure)
            attrs, mask = result.attributions, result.mask
            seconds = time.perf_counter() - t0 - measuring[0]
            with ablated(pipe, mask):
                m = edit_metrics(before, evaluate(), [concept])
            by_round = earlier + [{**m, "zeroed": len(mask)}]
            last = attrs[0].metadata  # J of the target and of each concept kept, on the model of the last round
            results[concept] = {**m, "zeroed": len(mask), "seconds": seconds, "goal": meets_goal(m), "preserve": keep,
                                "J_last_round": last["J"], "J_preserve_last_round": last["J_preserve"],
                                **({"rounds": by_round} if args.every_round else {})}
            print(concept, f"{m['target_after']:.2f} / {m['kept_min']:.2f}", flush=True)
        return {"before": before, "results": results, "settings": vars(args)}

    def report(self, results: dict, args) -> str:
        s = settings(results, args)
        every_round, at_steps, preserve_hurt, rule = s.every_round, s.at_steps, s.preserve_hurt, s.preserve_rule
        rows = []
        for concept, m in results["results"].items():
            by_round = m.get("rounds", [m])
            rows.append([concept, *([", ".join(m["preserve"])] if preserve_hurt else []), m["target_before"],
                         *([", ".join(f"{r['target_after']:.2f} / {r['kept_min']:.2f}" for r in by_round)]
                           if every_round else []),
                         m["target_after"], m["others_after"],
                         f"{m['kept_min']:.2f} ({m['kept_min_concept']})", m["zeroed"], f"{m['seconds']:.0f}",
                         "yes" if m["goal"] else "no"])
        met = sum(r["goal"] for r in results["results"].values())
        scores, preserve = ("plain scores", "")  # the heading's word for the scores, and the call's preserve argument
        if s.preserve:
            scores, preserve = "preserve set", ", preserve=<the other values of the concept's attribute>"
        elif s.preserve_all:
            scores, preserve = "preserve set", ", preserve=<the 14 other concepts>"
        elif preserve_hurt:
            scores = "preserve the hurt concepts"
            preserve = f", preserve=<the concepts `{Path(preserve_hurt).stem}` hurt>"
        guard = f" ({rule} rule)" if preserve and rule != "mean" else ""
        if guard:
            preserve += f", preserve_rule=\"{rule}\""
        if at_steps != "all":
            preserve += f", at_steps=\"{at_steps}\""
        return f"""### Erase in rounds ({s.rounds} rounds of {s.ratio} per row of the '{s.components}' weights, {s.seeds} trajectories, {scores}{guard}{window_label(at_steps)})

Each round re-scores the model with the earlier rounds' weights zeroed and zeroes the top {s.ratio} per row of the
new scores (`cadiff.erase(pipe, concept, rounds={s.rounds}, ratio={s.ratio}, components="{s.components}"{preserve})`).
Accuracy over {36 * s.repeats} images of the balanced design (seeds {s.eval_seed} on; one image moves a shape or
colour by {1 / (6 * s.repeats):.2f}).
Goal (issue 3): {goal_text()} of its accuracy: met for {met}/{len(rows)}.

{table(["concept", *(["preserve"] if preserve_hurt else []), "before",
        *(["after each round (target / worst kept)"] if every_round else []), "after", "others (mean)", "worst kept",
        "zeroed", "edit s", "goal met"], rows)}
"""


if __name__ == "__main__":
    CadRounds().main()
