"""Quality bar of the embedded model: evaluator accuracy on full and partial prompts, and throughput.

Writes docs/shapes-quality.md (the whole page: tables) and docs/img/shapes_full_prompts.png (one image per full
prompt); its results: bench/results/shapes_quality.json.
Run: .venv/bin/python bench/shapes_quality.py [--model DIR] [--seeds 4]
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from common import RESULTS, ROOT, Benchmark, Skip, require

DOCS = ROOT / "docs"


def accuracy(pred: list[str], expected: list[str]) -> float:
    return float(np.mean([p == e for p, e in zip(pred, expected)]))


class ShapesQuality(Benchmark):
    name = "shapes_quality"
    summary = "quality bar of a shapes model: evaluator accuracy on full and partial prompts, and throughput (a page)"

    def options(self, p) -> None:
        p.add_argument("--model", default=None)
        p.add_argument("--evaluator", default=None)
        p.add_argument("--seeds", type=int, default=4)
        p.add_argument("--docs", default=str(DOCS))
        p.add_argument("--device", default="cpu")
        p.add_argument("--results", default=str(RESULTS), help="folder of shapes_quality.json (default bench/results)")
        p.add_argument("--tag", default="", help="suffix of the page, picture and JSON (e.g. dit: shapes-quality-dit.md, "
                                                 "shapes_full_prompts_dit.png, shapes_quality_dit.json)")
        p.add_argument("--bar", type=float, default=None,
                       help="one goal for shape, colour and texture (default: the U-Net's 0.99 / 0.99 / 0.98)")

    def path(self, args) -> Path:
        return Path(args.results) / f"shapes_quality{'_' + args.tag if args.tag else ''}.json"

    def run(self, args) -> dict:
        import torch

        import cadiff
        from cadiff.io.runs import versions
        from cadiff.models import describe_model, sampling_defaults
        from cadiff.report import image_grid
        from cadiff.worlds import get_world
        from cadiff.worlds.shapes import COLOURS, SHAPES, TEXTURES, full_caption, load_evaluator

        suffix = f"_{args.tag}" if args.tag else ""
        goals = ({a: args.bar for a in ("shape", "colour", "texture")} if args.bar is not None
                 else {"shape": 0.99, "colour": 0.99, "texture": 0.98})
        torch.set_num_threads(2)
        pipe, ev = cadiff.load_pipeline(args.model, device=args.device), load_evaluator(args.evaluator)
        settings = sampling_defaults(pipe)
        seeds = list(range(1000, 1000 + args.seeds))

        triples = [(s, c, t) for s in SHAPES for c in COLOURS for t in TEXTURES]
        prompts = [full_caption(s, c, t) for s, c, t in triples for _ in seeds]
        t0 = time.time()
        images = cadiff.generate(pipe, prompts, seeds * len(triples), batch_size=72)
        seconds = time.time() - t0
        pred = ev.predict(images)
        full = {name: accuracy(pred[name], [trip[i] for trip in triples for _ in seeds])
                for i, name in enumerate(("shape", "colour", "texture"))}
        all3 = float(np.mean([all(pred[n][k] == trip[i] for i, n in enumerate(("shape", "colour", "texture")))
                              for k, trip in enumerate(t for t in triples for _ in seeds)]))
        # per value: the accuracy engine's per-concept rate on the images whose prompt names it
        labels = [dict(zip(("shape", "colour", "texture"), trip)) for trip in triples for _ in seeds]
        per_value = get_world("shapes").accuracy(pred, labels)

        partial: list[tuple[str, str, str, str]] = (  # prompt, attribute scored, expected value, prompt form
            [(f"a {s}", "shape", s, "a {shape}") for s in SHAPES]
            + [(f"a {c} shape", "colour", c, "a {colour} shape") for c in COLOURS]
            + [(f"a {t} shape", "texture", t, "a {texture} shape") for t in TEXTURES]
            + [(f"a {c} {s}", "shape", s, "a {colour} {shape}") for s in SHAPES for c in COLOURS]
        )
        p_prompts = [p[0] for p in partial for _ in seeds]
        p_images = cadiff.generate(pipe, p_prompts, seeds * len(partial), batch_size=72)
        p_pred = ev.predict(p_images)
        partial_acc: dict[str, list[bool]] = {}
        for k, (_, attr, value, form) in enumerate(p for p in partial for _ in seeds):
            partial_acc.setdefault(form, []).append(p_pred[attr][k] == value)
        partial_summary = {k: float(np.mean(v)) for k, v in partial_acc.items()}

        # one image per full prompt for the picture
        first = [k * len(seeds) for k in range(len(triples))]
        img_dir = Path(args.docs) / "img"
        img_dir.mkdir(parents=True, exist_ok=True)
        image_grid(images[first], cols=18, scale=3, row_labels=list(SHAPES)).save(
            img_dir / f"shapes_full_prompts{suffix}.png")

        return {"model": describe_model(pipe, args.model), "settings": settings, "seeds": seeds,
                "n_full": len(prompts), "full": full, "all_three": all3, "per_value": per_value,
                "partial": partial_summary, "n_partial": len(p_prompts),
                "throughput_img_per_s": len(prompts) / seconds, "threads": 2, "device": args.device,
                "versions": versions(),
                # what the page shows besides (kept since the runner's base: older JSON lack them)
                "page": {"model": args.model, "tag": args.tag, "goals": goals, "date": time.strftime("%Y-%m-%d"),
                         "scheduler": type(pipe.scheduler).__name__}}

    def report(self, result: dict, args) -> str:
        require(result, "page")
        page, settings, full = result["page"], result["settings"], result["full"]
        goals, seeds, per_value, partial = page["goals"], result["seeds"], result["per_value"], result["partial"]
        suffix = f"_{page['tag']}" if page["tag"] else ""
        model = "Embedded shapes model" if page["model"] is None else f"Shapes model `{page['model']}`"
        lines = [
            f"# {model}: measured quality",
            "",
            f"Generated by `bench/shapes_quality.py` on {page['date']}; model fingerprint "
            f"`{result['model']['fingerprint']}`; {page['scheduler']} {settings['num_inference_steps']} steps, "
            f"guidance {settings['guidance_scale']}; seeds {seeds[0]}..{seeds[-1]}; scored by the shipped evaluator.",
            "",
            f"## All 108 full prompts x {len(seeds)} seeds ({result['n_full']} images)",
            "",
            "| attribute | accuracy | goal |",
            "|---|---|---|",
            *[f"| {a} | {full[a]:.3f} | >= {goals[a]:.2f} |" for a in ("shape", "colour", "texture")],
            f"| all three | {result['all_three']:.3f} | |",
            "",
            "Per value (accuracy of that attribute on prompts naming it):",
            "",
            "| " + " | ".join(per_value) + " |",
            "|" + "---|" * len(per_value),
            "| " + " | ".join(f"{v:.2f}" for v in per_value.values()) + " |",
            "",
            f"## Partial prompts ({result['n_partial']} images; accuracy on the named attribute; goal >= 0.97)",
            "",
            "| prompt form | accuracy |",
            "|---|---|",
            *[f"| `{k}` | {v:.3f} |" for k, v in partial.items()],
            "",
            "## Throughput",
            "",
            f"{result['throughput_img_per_s']:.1f} images/s (batch 72, {settings['num_inference_steps']} steps, "
            f"guidance on, {'2 CPU threads' if result['device'] == 'cpu' else result['device']}, full pipeline incl. "
            "VAE decode).",
            "",
            f"![one image per full prompt](img/shapes_full_prompts{suffix}.png)",
            "",
        ]
        return "\n".join(lines)

    def write(self, results: dict, args, section: str, append: bool = True) -> None:
        """The whole page docs/shapes-quality[-TAG].md (no sections); append=False: only where it exists."""
        require(results, "page")
        tag = results["page"]["tag"]
        out = Path(args.docs) / f"shapes-quality{'-' + tag if tag else ''}.md"
        if not append and not out.exists():
            raise Skip(f"no page {out.name}")
        args.doc = out
        out.write_text(self.report(results, args))


if __name__ == "__main__":
    ShapesQuality().main()
