"""Which weights and ratios the MMDiT's erase can use: plain CAD-Erase of one concept on `embedded:dit`, component
group x ratio, each judged on the balanced design (36 images per repeat). The calibrated search's grid (linear
weights, 2 % and 3 % per row) is the U-Net's; this bench measures the DiT's frontier around it.

    flock /tmp/cadiff-heavy.lock .venv/bin/python bench/cad_dit_probe.py --concept circle
"""

from __future__ import annotations

import time

from cad_common import load, options, save_json, table, write_section
from common import RESULTS, hardware, tagged


def main() -> None:
    p = options(__doc__.splitlines()[0])
    p.add_argument("--concept", default="circle")
    p.add_argument("--groups", nargs="*", default=["ff", "attn", "linear"])
    p.add_argument("--ratios", nargs="*", type=float, default=[0.002, 0.005, 0.01, 0.02])
    p.add_argument("--scopes", nargs="*", default=["row", "global"], help="selection scopes (row: the paper's)")
    p.add_argument("--rule", default=None, choices=["mean", "guard", "relative"],
                   help="score against every other concept of the world with this preserve rule (default: plain)")
    p.add_argument("--at-steps", default="all", help="steps the erase objective sums over (all, early, ...)")
    p.add_argument("--seeds", type=int, default=4)
    p.set_defaults(model="embedded:dit")
    args = p.parse_args()
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
    rows, results = [], {}
    for group in args.groups:
        attr = cadiff.attribute(pipe, args.concept, seeds=args.seeds, components=group, preserve=keep,
                                preserve_rule=args.rule or "mean", at_steps=args.at_steps, progress=False)
        for scope in args.scopes:
            for ratio in args.ratios:
                try:
                    mask = attr.select(ratio=ratio, scope=scope)
                except EmptySelectionError:
                    rows.append([group, scope, f"{ratio:g}", 0, "selects nothing", None, None])
                    continue
                with ablated(pipe, mask, check=False):
                    after = concept_accuracies(pipe, evaluator, repeats=1)
                m = edit_metrics(before, after, [args.concept])
                results[f"{group}/{scope}/{ratio}"] = {**m, "zeroed": len(mask)}
                rows.append([group, scope, f"{ratio:g}", len(mask), m["target_after"], m["kept_min"], m["others_after"]])
                print(group, scope, ratio, len(mask), m["target_after"], m["kept_min"], flush=True)
    name = tagged(args, f"cad_dit_probe_{args.concept}")
    save_json(RESULTS / f"{name}.json", {"before": before, "results": results, "settings": vars(args),
                                         "seconds": round(time.time() - t0, 1)})
    how = f"{args.rule} rule against the other 14 concepts" if args.rule else "plain"
    md = (f"### Erase of '{args.concept}' on {args.model} ({how}, steps {args.at_steps}): group x scope x ratio\n\n"
          f"{args.seeds} trajectories; judged on 36 images (6 naming '{args.concept}'); kept = worst share of another "
          f"concept's accuracy ({hardware(args)}, {time.time() - t0:.0f} s).\n\n"
          + table(["group", "scope", "ratio", "zeroed", "target after", "worst kept", "others after (mean)"], rows))
    write_section(args.doc, name, md)
    print(md)


if __name__ == "__main__":
    main()
