"""CAD-Train's levers on one concept of the embedded model: one CAD attribution (the guarded line: linear weights,
early steps, the guard rule against every other concept, 8 trajectories), then ESD's fine-tuning of its top weights
at each point of a grid (the share per row that trains, the learning rate, iterations, ESD's eta), the other 14
concepts held by the keep term; each edit's target accuracy and worst kept share on 72 images of the design (seeds
500000-500071, the attack bench's keep check), and the fine-tuning's time on 2 CPU threads.

Writes bench/results/cadtrain_sweep.json and the section `cadtrain_sweep` of docs/evaluation.md.

    flock /tmp/cadiff-heavy.lock .venv/bin/python bench/cadtrain_sweep.py --concept circle
"""

from __future__ import annotations

import time

from common import ROOT, Benchmark, table

# (share per row, lr, keep weight, iterations, eta)
GRID = [(0.05, 1e-3, 1.0, 100, 1.0), (0.05, 3e-3, 1.0, 100, 1.0), (0.1, 3e-3, 1.0, 100, 1.0),
        (0.2, 3e-3, 1.0, 100, 1.0), (0.1, 1e-2, 1.0, 100, 1.0), (0.1, 3e-2, 1.0, 100, 1.0),
        (0.2, 1e-2, 1.0, 100, 1.0), (0.1, 1e-2, 1.0, 100, 3.0), (0.1, 1e-2, 1.0, 200, 1.0)]
KEEP_SEED = 500_000


class CADTrainSweep(Benchmark):
    name = "cadtrain_sweep"
    summary = "CAD-Train's levers on one concept: share trained, lr, iterations, eta against target and kept"
    doc, title = ROOT / "docs" / "evaluation.md", "# Evaluation"

    def options(self, p) -> None:
        super().options(p)
        p.add_argument("--concept", default="circle")

    def run(self, args) -> dict:
        import torch

        import cadiff
        from cadiff.attribution import Concepts, attribute
        from cadiff.attribution.config import GuardedAttributionConfig
        from cadiff.editing.methods.esd import FineTuneConfig, fine_tune
        from cadiff.evaluation.accuracy import kept_shares, make_probe, measure
        from cadiff.evaluation.judges import as_judge
        from cadiff.worlds import world_of

        torch.set_num_threads(args.threads)
        pipe = cadiff.load_pipeline(args.model)
        world, judge = world_of(pipe), as_judge(None, pipe=pipe)
        concept = args.concept
        keep = world.others([concept])
        probe = make_probe(pipe, world, [concept], keep, repeats=2, extra=0, seed=KEEP_SEED)
        before = {c: r.value for c, r in measure(pipe, probe, judge, [concept, *keep]).items()}
        concepts = Concepts.on(pipe, [concept], keep, base_prompt="")
        started = time.perf_counter()
        (attr,) = attribute(pipe, concepts, GuardedAttributionConfig(seeds=8), progress=False)
        rows = []
        for ratio, lr, keep_weight, iterations, eta in GRID[:2] if args.quick else GRID:
            trained = attr.select(ratio=ratio, scope="row").booleans()
            started_tune = time.perf_counter()
            edited, _ = fine_tune(pipe, concepts, FineTuneConfig(iterations=2 if args.quick else iterations, lr=lr,
                                                                 negative_guidance=eta),
                                  trained, keep_prompts=concepts.keep_prompts, keep_weight=keep_weight)
            seconds = time.perf_counter() - started_tune
            after = {c: r.value for c, r in measure(edited, probe, judge, [concept, *keep]).items()}
            kept = kept_shares(before, after, keep)
            rows.append({"ratio": ratio, "lr": lr, "keep_weight": keep_weight, "iterations": iterations, "eta": eta,
                         "target": after[concept], "kept_min": min(kept.values()),
                         "kept_min_concept": min(kept, key=kept.get), "seconds": round(seconds, 1)})
            print(rows[-1], flush=True)
        return {"concept": concept, "attribution_seconds": round(time.perf_counter() - started, 1),
                "images": len(probe), "rows": rows, "settings": {"threads": args.threads}}

    def report(self, results: dict, args) -> str:
        head = (f"CAD-Train on {results['concept']} (`bench/cadtrain_sweep.py`): one attribution, then each "
                "fine-tuning; *target*: the concept's accuracy after, *worst kept*: the lowest share of its accuracy "
                f"another concept keeps ({results['images']} images of the design, seeds 500000-500071), *seconds*: "
                "the fine-tuning alone (the attribution takes about 30 s more). JSON: "
                "`bench/results/cadtrain_sweep.json`." + (f" ({results['source']}.)" if "source" in results else ""))
        rows = [[f"{r['ratio']:.0%}", f"{r['lr']:g}", r["iterations"], f"{r['eta']:g}", f"{r['keep_weight']:g}",
                 f"{r['target']:.2f}", f"{r['kept_min']:.2f} ({r['kept_min_concept']})", f"{r['seconds']:.0f}"]
                for r in results["rows"]]
        return head + "\n\n" + table(["trained per row", "lr", "iterations", "eta", "keep weight", "target",
                                      "worst kept", "seconds"], rows)


if __name__ == "__main__":
    CADTrainSweep().main()
