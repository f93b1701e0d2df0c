"""CAD against the baselines on the embedded model, one protocol for all: erase accuracy, keep accuracy, wall time.

For each concept, each method edits the shipped model (CAD-Erase plain and with a preserve set = the other values
of the concept's attribute; ESD-u; ConceptPrune-style pruning; the magnitude control, which zeroes the largest |w| of
CAD's components in CAD's amount whatever the concept), then `cadiff.evaluate` scores the edited model on
the balanced shapes design (36 prompts a repeat, fixed seeds) with the shipped evaluator:
- erase = accuracy of the concept's attribute on the images whose prompt names the concept (lower is better),
- keep (same attribute) = accuracy of that attribute on all other images (paper-style; higher is better),
- keep (all) = mean accuracy of the other 14 concepts.
Also: an ESD iteration sweep on one concept (time for ESD to reach CAD's erase accuracy, hence the speed ratio),
and recall: CAD-Amplify with real rendered images on an ESD-erased model.

    flock /tmp/cadiff-heavy.lock .venv/bin/python bench/eval_baselines.py
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from common import Skip, Timer, figure_link, hardware, others_of, save_json
from eval_common import EvalBenchmark, load, table

METHODS = ("cad", "cad-preserve", "esd", "prune", "magnitude")


def views(summary: dict, concept: str) -> dict:
    """erase / keep numbers of one evaluation for `concept`."""
    pc = summary["metrics"]["shapes"]["per_concept"]
    return {"erase": pc[concept]["target"], "keep_same": pc[concept]["others"],
            "keep_all": float(np.mean([v["target"] for c, v in pc.items() if c != concept]))}


def cad_available() -> bool:
    try:
        from cadiff import amplify, erase  # noqa: F401
    except ImportError:
        return False
    return True


def edit(method: str, pipe, concept: str, args) -> tuple[object, dict]:
    """(edited pipeline, the settings recorded with its evaluation)."""
    import cadiff
    from cadiff.editing import method_config

    amount = {} if args.cad_ratio is None else {"ratio": args.cad_ratio}
    if args.cad_components:
        amount["components"] = args.cad_components
    amount["seeds"] = args.cad_seeds
    cad_settings = {"ratio": args.cad_ratio or "default", "components": args.cad_components or "default",
                    "seeds": args.cad_seeds}
    if method == "cad":
        return cadiff.erase(pipe, concept, cadiff.CADConfig(), **amount).pipeline, cad_settings
    if method == "cad-preserve":
        return (cadiff.erase(pipe, concept, cadiff.CADConfig(), preserve=others_of(concept), **amount).pipeline,
                {**cad_settings, "preserve": others_of(concept)})
    if method == "magnitude":  # CAD's components and amount, no concept
        same = {k: v for k, v in amount.items() if k != "seeds"}
        return cadiff.erase(pipe, concept, method_config("magnitude", **same)).pipeline, {**cad_settings, "seeds": None}
    if method == "esd":
        result = cadiff.erase(pipe, concept, method_config("esd", iterations=args.esd_iterations, lr=args.esd_lr))
        return result.pipeline, {"iterations": args.esd_iterations, "lr": args.esd_lr}
    result = cadiff.erase(pipe, concept, method_config("prune", sparsity=args.prune_sparsity, seeds=args.prune_seeds))
    return result.pipeline, {"sparsity": args.prune_sparsity, "seeds": args.prune_seeds}


def render_concept(concept: str, n: int, folder: Path) -> Path:
    """n real images of `concept` from the renderer (other attributes random), as PNG files."""
    from PIL import Image

    from cadiff.worlds.shapes import ATTRIBUTES, attribute_of, render
    from cadiff.worlds.shapes.world import random_labels

    s, c, t = random_labels(n, seed=99)
    labels = {"shape": list(s), "colour": list(c), "texture": list(t)}
    attribute = attribute_of(concept)
    labels[attribute] = [ATTRIBUTES[attribute].index(concept)] * n
    batch = render(labels["shape"], labels["colour"], labels["texture"], seed=99)
    folder.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(batch.images):
        Image.fromarray(img).save(folder / f"{i:03d}.png")
    return folder


def concept_grid(folders: dict[str, Path], concept: str, out: Path) -> None:
    from cadiff.evaluation import read_rows
    from cadiff.evaluation.metrics import ImageSource
    from cadiff.report import image_grid, stack_grids

    grids, titles = [], []
    for name, folder in folders.items():
        rows = read_rows(folder / "rows.csv")
        idx = [int(r["index"]) for r in rows if concept in (r["label_shape"], r["label_colour"], r["label_texture"])]
        grids.append(image_grid(ImageSource(folder / "images").load(idx[:12]), cols=12))
        titles.append(name)
    stack_grids(grids, titles).save(out)


def tradeoff_plot(results: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for method, marker in zip(METHODS, "osv^D"):
        pts = [(r[method]["erase"], r[method]["keep_all"]) for r in results.values() if method in r]
        if pts:
            ax.scatter(*zip(*pts), marker=marker, label=method, alpha=0.8)
    base = [(r["unedited"]["erase"], r["unedited"]["keep_all"]) for r in results.values()]
    ax.scatter(*zip(*base), marker="x", color="grey", label="unedited")
    ax.set_xlabel("erase: accuracy on the target's images (lower is better)")
    ax.set_ylabel("keep: mean accuracy of the other 14 concepts")
    ax.set_xlim(-0.05, 1.05)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


class EvalBaselines(EvalBenchmark):
    name = "eval_baselines"
    summary = "CAD against ESD-u, pruning and magnitude on one protocol (erase, keep, time); ESD sweep; recall"

    def options(self, p) -> None:
        super().options(p)
        p.add_argument("--concepts", nargs="*", default=None, help="default: all 15")
        p.add_argument("--methods", nargs="*", default=list(METHODS), choices=METHODS)
        p.add_argument("--repeats", type=int, default=1, help="repeats of the 36-prompt balanced design")
        p.add_argument("--cad-ratio", type=float, default=None, help="CAD per-row ratio (default: cadiff.erase's)")
        p.add_argument("--cad-components", default=None, help="CAD component group (default: cadiff.erase's, 'ff')")
        p.add_argument("--cad-seeds", type=int, default=4,
                       help="CAD trajectories per concept (cadiff.attribute's default: 4)")
        p.add_argument("--esd-iterations", type=int, default=100)
        p.add_argument("--esd-lr", type=float, default=1e-4)
        p.add_argument("--prune-sparsity", type=float, default=0.01)
        p.add_argument("--prune-seeds", type=int, default=4)
        p.add_argument("--sweep", default="circle", help="concept of the ESD iteration sweep ('' to skip)")
        p.add_argument("--sweep-iterations", nargs="*", type=int, default=[25, 50, 100, 200, 400])
        p.add_argument("--recall", nargs="*", default=["circle"], help="concepts of the recall experiment")
        p.add_argument("--grids", type=int, default=3, help="concept grids for the first N concepts")
        p.add_argument("--section", default="eval_baselines", help="name of the docs section (and JSON file) written")

    def run(self, args) -> dict:
        from cadiff.editing.methods.esd import ESDConfig, esd
        from cadiff.evaluation import evaluate, load_prompts
        from cadiff.worlds.shapes.world import CONCEPTS

        concepts = args.concepts or list(CONCEPTS)
        if args.quick:
            concepts, args.esd_iterations, args.sweep_iterations = concepts[:2], 3, [2, 4]
        methods = [m for m in args.methods if not m.startswith("cad") or cad_available()]
        pipe = load(args)
        prompts = load_prompts("shapes-balanced", per_prompt=args.repeats)
        work = Path(args.work) / "baselines"
        img = Path(args.img)
        common = dict(metrics=["shapes"], metric_options={"judge_weights": args.evaluator}, batch_size=36)

        def score(p, name, record):
            return evaluate(p, prompts, work / name, edit=record, **common)

        started = time.time()
        base = score(pipe, "unedited", None)
        results, seconds = {}, {}
        esd_models = {}
        for concept in concepts:
            results[concept] = {"unedited": views(base, concept)}
            for method in methods:
                with Timer() as t:
                    edited, settings = edit(method, pipe, concept, args)
                summary = score(edited, f"{method}-{concept}", {"method": method, "concept": concept, **settings})
                results[concept][method] = {**views(summary, concept), "seconds": t.seconds}
                seconds.setdefault(method, []).append(t.seconds)
                if method == "esd" and concept in args.recall:
                    esd_models[concept] = edited
                print(concept, method, results[concept][method], flush=True)
            save_json(self.path(args), {"results": results, "settings": vars(args), "partial": True})

        for concept in concepts[: args.grids]:
            names = {"unedited": work / "unedited", **{m: work / f"{m}-{concept}" for m in methods}}
            concept_grid(names, concept, img / f"{args.section}_{concept}.png")

        sweep = []
        if args.sweep and "cad" in methods:
            checkpoints = sorted(args.sweep_iterations)
            clock = {"train": 0.0, "last": time.perf_counter()}

            def at(i, edited):
                clock["train"] += time.perf_counter() - clock["last"]
                if i in checkpoints:
                    s = views(score(edited, f"esd-sweep-{args.sweep}-{i}", {"method": "esd", "concept": args.sweep,
                                                                             "iterations": i, "lr": args.esd_lr}),
                              args.sweep)
                    sweep.append({"iterations": i, "train_seconds": clock["train"], **s})
                    print("sweep", sweep[-1], flush=True)
                clock["last"] = time.perf_counter()

            esd(pipe, args.sweep, ESDConfig(iterations=max(checkpoints), lr=args.esd_lr), on_iteration=at)

        recall = {}
        if "esd" in methods and cad_available():
            import cadiff

            for concept in [c for c in args.recall if c in esd_models]:
                folder = render_concept(concept, 32, work / f"real-{concept}")
                with Timer() as t:
                    recalled = cadiff.amplify(esd_models[concept], concept, images=str(folder)).pipeline
                s = views(score(recalled, f"recall-{concept}", {"method": "esd+cad-amplify", "concept": concept,
                                                                "images": "32 rendered"}), concept)
                recall[concept] = {"unedited": results[concept]["unedited"], "esd": results[concept]["esd"],
                                   "esd+amplify": {**s, "seconds": t.seconds}}

        return {"results": results, "sweep": sweep, "recall": recall, "settings": vars(args),
                "hardware": hardware(args), "n_images": len(prompts), "total_seconds": time.time() - started}

    def report(self, saved: dict, args) -> str:
        if saved.get("partial"):
            raise Skip("a partial run; finish the run before rendering it")
        s = argparse.Namespace(**{**vars(args), "cad_seeds": 4, **saved["settings"]})  # older runs used 4 seeds
        methods = [m for m in s.methods if all(m in r for r in saved["results"].values())]
        return report(saved["results"], methods, saved["sweep"], saved["recall"], s,
                      saved.get("n_images", 36 * s.repeats), saved["hardware"], args)

    def figures(self, saved: dict, args) -> None:
        tradeoff_plot(saved["results"], Path(args.img) / f"{saved['settings']['section']}_tradeoff.png")


def report(results, methods, sweep, recall, args, n_images, where: str, written) -> str:
    """The section; `args` the run's settings, `written` the doc and folder of pictures being written."""
    fmt = lambda v: "–" if v is None else f"{v:.2f}"  # noqa: E731
    header = ["concept", "unedited erase / keep same / keep all"] + [f"{m} erase / keep same / keep all / s"
                                                                     for m in methods]
    rows = []
    for concept, r in results.items():
        u = r["unedited"]
        row = [concept, f"{fmt(u['erase'])} / {fmt(u['keep_same'])} / {fmt(u['keep_all'])}"]
        for m in methods:
            v = r[m]
            row.append(f"{fmt(v['erase'])} / {fmt(v['keep_same'])} / {fmt(v['keep_all'])} / {v['seconds']:.1f}")
        rows.append(row)
    mean = ["**mean**", " / ".join(fmt(np.mean([r["unedited"][k] for r in results.values()]))
                                   for k in ("erase", "keep_same", "keep_all"))]
    for m in methods:
        vs = [r[m] for r in results.values()]
        mean.append(" / ".join(fmt(np.mean([v[k] for v in vs])) for k in ("erase", "keep_same", "keep_all"))
                    + f" / {np.mean([v['seconds'] for v in vs]):.1f}")
    rows.append(mean)
    settings = {
        "cad": f"CAD = `cadiff.erase` (ratio {args.cad_ratio or 'default'}, components {args.cad_components or 'default'}, "
               f"{args.cad_seeds} trajectories)",
        "cad-preserve": "CAD-preserve = the same, preserving the other values of the attribute",
        "esd": f"ESD-u {args.esd_iterations} iterations, lr {args.esd_lr}, negative guidance 1, start guidance 3",
        "magnitude": "magnitude = the largest-|w| weights of CAD's components, CAD's ratio per row, any concept",
        "prune": f"prune sparsity {args.prune_sparsity}, {args.prune_seeds} seeds, timestep fraction 0.5, "
                 "reference = empty prompt",
    }
    text = (f"{n_images} images per evaluation (balanced shapes design x{args.repeats}, 6 images name each shape or "
            f"colour, 12 each texture), shipped evaluator, {where}. Settings: "
            + "; ".join(settings[m] for m in methods) + ". "
            "Wall time is the edit only (attribution + selection + ablation for CAD; fine-tuning for ESD; "
            "activation recording + pruning for prune); evaluation excluded.\n\n" + table(header, rows)
            + f"\n\n![erase vs keep]({figure_link(written, f'{args.section}_tradeoff.png')})\n")
    for concept in list(results)[: args.grids]:
        text += f"\n![{concept}: unedited and each method]({figure_link(written, f'{args.section}_{concept}.png')})\n"
    if sweep:
        cad = results.get(args.sweep, {}).get("cad")
        srows = [[s["iterations"], round(s["train_seconds"], 1), fmt(s["erase"]), fmt(s["keep_same"]),
                  fmt(s["keep_all"])] for s in sweep]
        text += (f"\n**ESD to CAD's erase accuracy** ('{args.sweep}'; ESD-u at lr {args.esd_lr}; CAD-Erase: erase "
                 f"{fmt(cad and cad['erase'])}, "
                 f"keep all {fmt(cad and cad['keep_all'])}, {cad['seconds']:.1f} s):\n\n"
                 + table(["ESD iterations", "train s", "erase", "keep same", "keep all"], srows))
        reached = [s for s in sweep if cad and s["erase"] <= cad["erase"]]
        unedited = results.get(args.sweep, {}).get("unedited", {}).get("erase")
        if cad and unedited is not None and cad["erase"] >= unedited:
            text += (f"\n\nCAD-Erase did not lower the erase accuracy at these settings ({fmt(cad['erase'])}, unedited "
                     f"{fmt(unedited)}), so there is no equal-erase point and no speed ratio to report.\n")
        elif cad and reached:
            first = reached[0]
            text += (f"\n\nESD first reaches CAD's erase accuracy at {first['iterations']} iterations: "
                     f"{first['train_seconds']:.1f} s against CAD's {cad['seconds']:.1f} s, a ratio of "
                     f"**{first['train_seconds'] / cad['seconds']:.1f}x** (keep all: ESD {fmt(first['keep_all'])}, "
                     f"CAD {fmt(cad['keep_all'])}).\n")
        elif cad:
            last = sweep[-1]
            text += (f"\n\nESD did not reach CAD's erase accuracy within {last['iterations']} iterations "
                     f"({last['train_seconds']:.1f} s, at least {last['train_seconds'] / cad['seconds']:.1f}x CAD's "
                     "time).\n")
    if recall:
        rrows = [[c, fmt(r["unedited"]["erase"]), fmt(r["esd"]["erase"]), fmt(r["esd+amplify"]["erase"]),
                  fmt(r["esd+amplify"]["keep_all"]), round(r["esd+amplify"]["seconds"], 1)] for c, r in recall.items()]
        text += ("\n**Recall**: CAD-Amplify (32 real images of the concept from the renderer) on the ESD-erased "
                 "model. Accuracy on the concept's images:\n\n"
                 + table(["concept", "unedited", "ESD-erased", "ESD + CAD-Amplify", "keep all after", "amplify s"],
                         rrows) + "\n")
    return text


if __name__ == "__main__":
    EvalBaselines().main()
