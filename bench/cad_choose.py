"""Choose-then-confirm: for each of the 15 concepts, choose one erase setting from every screening run measured so far
by a fixed rule, then measure that one setting on images no run has seen.

The screening runs (`--screens`: the JSONs of bench/cad_preserve.py, cad_erase.py and cad_rounds.py) each evaluated
their settings on the same 72 images (seeds 1000 on). Across them a concept has tens of settings (ratio, rounds, step
window, components, base prompt, preserve set). Picking the best of tens on 72 images flatters it, so the pick is
confirmed on `36 * --repeats` new images (seeds from --seed on). The rule, fixed before the confirmation ran: the
smallest shortfall from the goal, max(0, target - 0.05) + max(0, 0.95 - worst kept); ties go to the larger worst
kept, then the smaller target, then the fewer weights zeroed. Writes the section `cad_choose` of bench/results/cad-results.md:

    flock /tmp/cadiff-heavy.lock .venv/bin/python bench/cad_choose.py --screens bench/results/cad_sweep_16*.json \
        bench/results/cad_erase_16.json bench/results/cad_probe_*.json bench/results/cad_rounds_16*.json --seed 130000
"""

from __future__ import annotations

import json
import time
from functools import partial
from pathlib import Path

from cadiff.editing.goal import GOAL_TARGET, KEEP_GOAL
from common import others_of, settings
from cad_common import CadBenchmark, goal_text, load, meets_goal, table

SCREEN_IMAGES = 72  # 2 repeats of the balanced 36-prompt design
SCREEN_SEED = 1000


def shortfall(m: dict) -> float:
    """How far edit metrics are from the erase goal (`Goal.distance`: 0 when it is met)."""
    from cadiff.editing.goal import Goal

    return Goal().distance(m["target_after"], m["kept_min"])


def screened_settings(path: Path) -> list[dict]:
    """Every (concept, setting, screening metrics) of one screening JSON; [] for a run not on the screening images."""
    data = json.loads(path.read_text())
    s = data["settings"]
    if 36 * s.get("repeats", 1) != SCREEN_IMAGES or s.get("eval_seed", SCREEN_SEED) != SCREEN_SEED \
            or s.get("seeds") != 16:
        return []
    common = {"components": s["components"], "at_steps": s.get("at_steps", "all"),
              "base_prompt": s.get("base_prompt") or "", "source": path.stem}
    out = []
    for key, m in data["results"].items():
        if "/" in key:  # a sweep: concept/variant/ratio, one round
            concept, variant, ratio = key.split("/")
            if variant not in ("plain", "attribute"):
                continue  # the random control and the wider preserve sets are not candidate edits
            setting = {**common, "preserve": variant == "attribute", "ratio": float(ratio), "rounds": 1}
        else:  # rounds: one entry per concept
            concept = key
            setting = {**common, "preserve": bool(s.get("preserve")), "ratio": s["ratio"], "rounds": s["rounds"]}
        out.append({"concept": concept, "setting": setting, "screen": m})
    return out


def choose(candidates: list[dict]) -> dict:
    """The candidate the fixed rule picks (see the module docstring)."""
    return min(candidates, key=lambda c: (shortfall(c["screen"]), -c["screen"]["kept_min"],
                                          c["screen"]["target_after"], c["screen"]["zeroed"]))


def describe(s: dict) -> str:
    """A setting as the flags of `cadiff erase`."""
    parts = [f"--ratio {s['ratio']:g}"]
    if s["rounds"] > 1:
        parts.append(f"--rounds {s['rounds']}")
    if s["at_steps"] != "all":
        parts.append(f"--at-steps {s['at_steps']}")
    if s["preserve"]:
        parts.append("--preserve <attribute>")
    if s["base_prompt"]:
        parts.append(f"--base-prompt '{s['base_prompt']}'")
    known = {"linear": "linear", "attn2\\.to_[kv]": "'attn2\\.to_[kv]'"}
    parts.append("--components " + known.get(s["components"], "<the regex of the run>"))
    return " ".join(parts)


class CadChoose(CadBenchmark):
    name = "cad_choose"
    summary = "choose one erase setting per concept from the screening runs by a fixed rule, confirm it on new images"

    def options(self, p) -> None:
        super().options(p)
        p.add_argument("--screens", nargs="+", help="screening JSONs (runs on other images are skipped; required)")
        p.add_argument("--repeats", type=int, default=8, help="confirmation repeats (36 images each)")
        p.add_argument("--seed", type=int, default=130_000, help="first confirmation seed: a range no run has used")
        p.add_argument("--concepts", nargs="*", default=None, help="default: all 15")
        p.add_argument("--section", default="cad_choose")

    def run(self, args) -> dict:
        import cadiff
        from cadiff.editing import ablated
        from cadiff.evaluation.accuracy import concept_accuracies, edit_metrics
        from cadiff.worlds.shapes.world import CONCEPTS

        if not args.screens:
            raise SystemExit("--screens JSON [JSON ...] is required: the screening runs to choose from")
        pool: dict[str, list[dict]] = {}
        used = []
        for path in map(Path, args.screens):
            found = screened_settings(path)
            used += [path.stem] if found else []
            for c in found:
                pool.setdefault(c["concept"], []).append(c)
        concepts = args.concepts or (["circle"] if args.quick else list(CONCEPTS))
        picks = {c: choose(pool[c]) for c in concepts}
        for c, pick in picks.items():  # printed before anything is measured: the choice does not see the new images
            print(f"{c}: {len(pool[c])} screened settings, chose {describe(pick['setting'])} from "
                  f"{pick['setting']['source']}"
                  f" (screen: target {pick['screen']['target_after']:.2f}, worst kept {pick['screen']['kept_min']:.2f})",
                  flush=True)

        pipe, evaluator = load(args)
        if args.quick:
            args.repeats = 1
        evaluate = partial(concept_accuracies, pipe, evaluator, repeats=args.repeats, seed=args.seed)
        before = evaluate()
        results = {}
        for concept, pick in picks.items():
            s = pick["setting"]
            t0 = time.perf_counter()
            mask = cadiff.erase(pipe, concept, cadiff.CADConfig(), preserve=others_of(concept) if s["preserve"] else None,
                                ratio=s["ratio"], rounds=s["rounds"], seeds=1 if args.quick else 16,
                                components=s["components"], at_steps=s["at_steps"], base_prompt=s["base_prompt"],
                                progress=False).mask
            seconds = time.perf_counter() - t0
            with ablated(pipe, mask):
                m = edit_metrics(before, evaluate(), [concept])
            screen = pick["screen"]
            if len(mask) != screen["zeroed"]:
                print(f"warning: {concept} zeroes {len(mask)} weights here, {screen['zeroed']} in {s['source']}",
                      flush=True)
            met = sum(meets_goal(c["screen"]) for c in pool[concept])
            results[concept] = {**m, "setting": s, "zeroed": len(mask), "seconds": seconds, "goal": meets_goal(m),
                                "candidates": len(pool[concept]), "candidates_meeting_goal": met,
                                "screen": {k: screen[k] for k in ("target_after", "kept_min", "kept_min_concept")}}
            print(concept, f"{m['target_after']:.2f} / {m['kept_min']:.3f}", flush=True)
        return {"before": before, "results": results, "screens": used, "settings": vars(args)}

    def report(self, saved: dict, args) -> str:
        s = settings(saved, args)
        before, results, used = saved["before"], saved["results"], saved["screens"]
        rows = []
        for concept, r in results.items():
            screen = r["screen"]
            rows.append([concept, f"`{describe(r['setting'])}`", f"{r['candidates']} ({r['candidates_meeting_goal']})",
                         f"{screen['target_after']:.2f} / {screen['kept_min']:.2f}", r["target_after"],
                         f"{r['kept_min']:.3f} ({r['kept_min_concept']})", "yes" if r["goal"] else "no"])
        n = 36 * s.repeats
        met = sorted(c for c, r in results.items() if r["goal"])
        return f"""### Choose, then confirm: one setting per concept, measured on {n} new images

For each concept, every erase setting screened so far on the same {SCREEN_IMAGES} images (seeds {SCREEN_SEED} on, 16
trajectories; runs {", ".join(f"`{u}`" for u in used)}) is a candidate. One is chosen by a rule fixed before this
run: the smallest shortfall from the goal, max(0, target - {GOAL_TARGET:g}) + max(0, {KEEP_GOAL:g} - worst kept), then the larger worst
kept, the smaller target, the fewer weights. The chosen setting is rebuilt and measured on {n} images no run had
used (seeds {s.seed} on; one image is {6 / n:.3f} of a shape or colour). Mean accuracy before any edit on these
images: {sum(before.values()) / len(before):.3f}. "candidates (goal)" counts the screened settings and how many of them
met the goal on the screening images. Goal (issue 3): {goal_text()} of its accuracy.

{table(["concept", "chosen setting (`cadiff erase` flags)", "candidates (goal)", "screen: target / worst kept",
        "new images: target", "worst kept", "goal met"], rows)}

Concepts that meet the goal with their chosen setting on new images: {len(met)}/{len(results)}{
        " (" + ", ".join(met) + ")" if met else ""}.
"""


if __name__ == "__main__":
    CadChoose().main()
