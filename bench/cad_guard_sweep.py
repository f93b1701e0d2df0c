"""The guard-rule erase of every concept of a world, on one model, over component groups and a ratio ladder: the
erase frontier of each concept, measured the same way on the U-Net and the MMDiT.

Each concept is scored once (the erase objective on the early steps, 16 trajectories, the linear weights). A
target's guard-rule scores are its own less, per weight, the largest positive score of any other concept (what
`preserve_rule="guard"` computes), folded here from the per-concept scores; a group is a subset of the linear
weights (per-row selection is per matrix, so a group's selection is the linear one restricted to it). Per target
and group the ratios go up until the target is gone (<= 5 %) or another concept falls below half its accuracy;
each point is judged on the balanced design (36 images). The best point per target (the calibrated search's
rule: meets the goal, else keeps every concept with the lowest target, else nearest the goal) is judged again
on 72 images of new seeds.

    flock /tmp/cadiff-heavy.lock .venv/bin/python bench/cad_guard_sweep.py --model embedded:dit --tag dit
"""

from __future__ import annotations

import time

from cad_common import CadBenchmark, load, table
from common import hardware, save_json, settings

GROUPS = {"ff": "ff", "attn+ff": None, "linear": "linear"}  # attn+ff: linear less the adaptive-norm modulation


def group_names(denoiser, group: str) -> set[str]:
    from cadiff.attribution.components import select_parameters

    if GROUPS[group] is not None:
        return set(select_parameters(denoiser, GROUPS[group]))
    return set(select_parameters(denoiser, "ff")) | set(select_parameters(denoiser, "attn"))


class CadGuardSweep(CadBenchmark):
    name = "cad_guard_sweep"
    summary = "the guard-rule erase of every concept over component groups and a ratio ladder: each one's frontier"

    def options(self, p) -> None:
        super().options(p)
        p.add_argument("--concepts", nargs="*", default=None)
        p.add_argument("--groups", nargs="*", default=["ff", "attn+ff", "linear"], choices=list(GROUPS))
        p.add_argument("--ratios", nargs="*", type=float, default=[0.005, 0.01, 0.02, 0.03])
        p.add_argument("--seeds", type=int, default=16)
        p.add_argument("--at-steps", default="early")

    def run(self, args) -> dict:
        if args.quick:
            args.concepts, args.groups, args.ratios, args.seeds = ["circle"], ["ff"], [0.01], 1

        import cadiff
        from cadiff.attribution import Attribution
        from cadiff.attribution.keep_rules import fold_maxima, with_keep_rule
        from cadiff.attribution.result import EmptySelectionError
        from cadiff.editing import ablated
        from cadiff.editing.goal import Goal
        from cadiff.evaluation.accuracy import concept_accuracies, edit_metrics
        from cadiff.models.loading import denoiser as loaded_denoiser
        from cadiff.worlds import world_of

        pipe, evaluator = load(args)
        denoiser = loaded_denoiser(pipe)
        world = world_of(pipe)
        everyone = list(world.concepts())
        concepts = args.concepts or everyone
        goal = Goal()
        out = self.path(args)
        t0 = time.time()
        scores, seconds = {}, {}
        for concept in everyone:
            started = time.time()
            a = cadiff.attribute(pipe, concept, seeds=args.seeds, components="linear", at_steps=args.at_steps,
                                 progress=False)
            scores[concept] = a
            seconds[concept] = round(time.time() - started, 1)
            print(f"scored {concept} in {seconds[concept]} s", flush=True)
        before = concept_accuracies(pipe, evaluator, repeats=1)
        confirm_seed = 200_000
        before_confirm = concept_accuracies(pipe, evaluator, repeats=2, seed=confirm_seed)
        names = {g: group_names(denoiser, g) for g in args.groups}
        results = {"settings": vars(args), "hardware": hardware(args), "score_seconds": seconds, "before": before,
                   "before_confirm": before_confirm, "concepts": {}}
        for target in concepts:
            others = [c for c in everyone if c != target]
            guarded = with_keep_rule(scores[target], fold_maxima(scores[c] for c in others), "guard")
            points = []
            for group in args.groups:
                attr = Attribution({n: s for n, s in guarded.scores.items() if n in names[group]}, guarded.metadata)
                for ratio in args.ratios:
                    try:
                        mask = attr.select(ratio=ratio, scope="row")
                    except EmptySelectionError:
                        continue
                    with ablated(pipe, mask, check=False):
                        after = concept_accuracies(pipe, evaluator, repeats=1)
                    m = edit_metrics(before, after, [target])
                    point = {"group": group, "ratio": ratio, "zeroed": len(mask), "target": m["target_after"],
                             "kept_min": m["kept_min"], "kept_min_concept": m["kept_min_concept"], "mask": mask}
                    points.append(point)
                    print(target, group, ratio, len(mask), round(m["target_after"], 2), round(m["kept_min"], 2),
                          flush=True)
                    if m["target_after"] <= goal.target or m["kept_min"] < 0.5:
                        break

            best = min(points, key=lambda q: (*goal.rank(q["target"], q["kept_min"]), q["zeroed"]))
            with ablated(pipe, best["mask"], check=False):
                after = concept_accuracies(pipe, evaluator, repeats=2, seed=confirm_seed)
            m = edit_metrics(before_confirm, after, [target])
            confirmed = {"target": m["target_after"], "kept_min": m["kept_min"],
                         "kept_min_concept": m["kept_min_concept"], "met": goal.meets(m["target_after"], m["kept_min"])}
            results["concepts"][target] = {"points": [{k: v for k, v in q.items() if k != "mask"} for q in points],
                                           "chosen": {k: v for k, v in best.items() if k != "mask"},
                                           "confirmed": confirmed}
            save_json(out, {**results, "seconds": round(time.time() - t0, 1)})
        results["seconds"] = round(time.time() - t0, 1)
        return results

    def report(self, results: dict, args) -> str:
        s = settings(results, args)
        return report(results, s.model, results.get("hardware") or hardware(s))


def report(results: dict, model: str, hardware_text: str) -> str:
    """The section: per concept the chosen point and its confirmation, and the frontier in two numbers: the lowest
    target any point reached while keeping every other concept at >= 95 %, and the best worst-kept share of the
    points that took the target to <= 5 %."""
    from cadiff.editing.goal import Goal

    goal, s = Goal(), results["settings"]
    gone_pct = f"{goal.target * 100:g}"
    rows, met, low, cost = [], 0, [], []
    for target, r in results["concepts"].items():
        points, best, conf = r["points"], r["chosen"], r["confirmed"]
        met += conf["met"]
        kept = [q["target"] for q in points if goal.keeps(q["kept_min"])]
        gone = [q for q in points if q["target"] <= goal.target]
        low.append(min(kept) if kept else None)
        kindest = max(gone, key=lambda q: (q["kept_min"], -q["zeroed"])) if gone else None
        cost.append(kindest["kept_min"] if gone else None)
        rows.append([target, f"{min(kept):.2f}" if kept else "none keeps",
                     (f"{cost[-1]:.2f} ({kindest['group']} {kindest['ratio']:g})" if gone else "never gone"),
                     f"{best['group']}, {best['ratio']:g} per row", best["zeroed"],
                     f"{conf['target']:.2f} / {conf['kept_min']:.2f}", "yes" if conf["met"] else "no",
                     "; ".join(f"{q['group']} {q['ratio']:g}: {q['target']:.2f}/{q['kept_min']:.2f}" for q in points)])
    reached = [x for x in low if x is not None]
    costs = [x for x in cost if x is not None]
    n = len(results["concepts"])
    summary = ""
    if reached:
        mean_cost = sum(costs) / len(costs) if costs else 0.0
        summary = (f"Over the {n} concepts: the lowest target that keeps every other concept is "
                   f"{sum(reached) / len(reached):.2f} on average ({sum(x <= goal.target for x in reached)} reach "
                   f"the goal's {gone_pct} %); {len(costs)} can be taken to <= {gone_pct} % at all, keeping at best "
                   f"{mean_cost:.2f} of the worst other concept on average.")
    return (f"### Guard-rule erase of every concept on {model}: group x ratio ({s['at_steps']} steps, per row)\n\n"
            f"One attribution per concept ({s['seeds']} trajectories, linear weights); the guard rule against the "
            f"other {len(results['before']) - 1} concepts; groups {', '.join(s['groups'])} (attn+ff: the linear "
            "weights less the adaptive-norm modulation); per group the ratios go up until the target is gone or "
            "another concept falls below half. Points judged on 36 images (6 naming a shape or colour, 12 a "
            "texture); the point the calibrated search's rule would choose confirmed on 72 images of seeds "
            "200000-200071. Goal met on the "
            f"confirmation for **{met} of {n}** concepts ({hardware_text}, {results.get('seconds', 0):.0f} s). "
            f"{summary}\n\n"
            + table(["concept", f"lowest target keeping >= {goal.keep * 100:g} %",
                     f"best worst-kept at target <= {gone_pct} % (setting)",
                     "chosen setting", "zeroed", "confirmation: target / worst kept", "goal met",
                     "every point (target / worst kept)"], rows))


if __name__ == "__main__":
    CadGuardSweep().main()
