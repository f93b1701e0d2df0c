"""Which weights and ratios the MMDiT's erase can use: plain CAD-Erase of one concept on `embedded:dit`, component
group x ratio, each judged on the balanced design (36 images per repeat). The calibrated search's grid (linear
weights, 2 % and 3 % per row) is the U-Net's; this bench measures the DiT's frontier around it.

    flock /tmp/cadiff-heavy.lock .venv/bin/python bench/cad_dit_probe.py --concept circle
"""

from __future__ import annotations

import time

from cad_common import CadBenchmark, load, table
from common import hardware, settings, tagged


class CadDitProbe(CadBenchmark):
    name = "cad_dit_probe"
    summary = "which weights and ratios the MMDiT's erase can use: component group x scope x ratio for one concept"

    def options(self, p) -> None:
        super().options(p)
        p.add_argument("--concept", default="circle")
        p.add_argument("--groups", nargs="*", default=["ff", "attn", "linear"])
        p.add_argument("--ratios", nargs="*", type=float, default=[0.002, 0.005, 0.01, 0.02])
        p.add_argument("--scopes", nargs="*", default=["row", "global"], help="selection scopes (row: the paper's)")
        p.add_argument("--rule", default=None, choices=["mean", "guard", "relative"],
                       help="score against every other concept of the world with this preserve rule (default: plain)")
        p.add_argument("--at-steps", default="all", help="steps the erase objective sums over (all, early, ...)")
        p.add_argument("--seeds", type=int, default=4)
        p.set_defaults(model="embedded:dit")

    def section(self, args) -> str:
        return getattr(args, "section", None) or tagged(args, f"{self.name}_{args.concept}")

    def run(self, args) -> dict:
        if args.quick:
            args.groups, args.ratios, args.seeds, args.scopes = ["ff"], [0.01], 1, ["global"]

        import cadiff
        from cadiff.attribution.result import EmptySelectionError
        from cadiff.editing import ablated
        from cadiff.evaluation.accuracy import concept_accuracies, edit_metrics
        from cadiff.worlds import world_of

        pipe, evaluator = load(args)
        keep = [c for c in world_of(pipe).concepts() if c != args.concept] if args.rule else None
        t0 = time.time()
        before = concept_accuracies(pipe, evaluator, repeats=1)
        results = {}
        for group in args.groups:
            attr = cadiff.attribute(pipe, args.concept, seeds=args.seeds, components=group, preserve=keep,
                                    preserve_rule=args.rule or "mean", at_steps=args.at_steps, progress=False)
            for scope in args.scopes:
                for ratio in args.ratios:
                    try:
                        mask = attr.select(ratio=ratio, scope=scope)
                    except EmptySelectionError:
                        continue  # the report shows it as "selects nothing"
                    with ablated(pipe, mask, check=False):
                        after = concept_accuracies(pipe, evaluator, repeats=1)
                    m = edit_metrics(before, after, [args.concept])
                    results[f"{group}/{scope}/{ratio}"] = {**m, "zeroed": len(mask)}
                    print(group, scope, ratio, len(mask), m["target_after"], m["kept_min"], flush=True)
        return {"before": before, "results": results, "settings": vars(args), "hardware": hardware(args),
                "seconds": round(time.time() - t0, 1)}

    def report(self, saved: dict, args) -> str:
        s = settings(saved, args)
        rows = []
        for group in s.groups:
            for scope in s.scopes:
                for ratio in s.ratios:
                    m = saved["results"].get(f"{group}/{scope}/{ratio}")
                    rows.append([group, scope, f"{ratio:g}", 0, "selects nothing", None, None] if m is None else
                                [group, scope, f"{ratio:g}", m["zeroed"], m["target_after"], m["kept_min"],
                                 m["others_after"]])
        how = f"{s.rule} rule against the other 14 concepts" if s.rule else "plain"
        return (f"### Erase of '{s.concept}' on {s.model} ({how}, steps {s.at_steps}): group x scope x ratio\n\n"
                f"{s.seeds} trajectories; judged on 36 images (6 naming '{s.concept}'); kept = worst share of another "
                f"concept's accuracy ({saved.get('hardware') or hardware(s)}, {saved['seconds']:.0f} s).\n\n"
                + table(["group", "scope", "ratio", "zeroed", "target after", "worst kept", "others after (mean)"],
                        rows))


if __name__ == "__main__":
    CadDitProbe().main()
