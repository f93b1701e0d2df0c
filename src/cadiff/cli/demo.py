"""`cadiff demo`: the main job on the embedded model, as `make demo` runs it."""

from __future__ import annotations

import argparse


def register(sub) -> None:
    p = sub.add_parser("demo", help="run the main job on the embedded shapes model and show where its results are")
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np
    from tqdm.auto import tqdm

    from cadiff.io import check_new
    from cadiff.models import describe_model, generate, load_pipeline, sampling_defaults
    from cadiff.report import image_grid
    from cadiff.runs import run_folder
    from cadiff.shapes import COLOURS, SHAPES, TEXTURES, full_caption, load_evaluator

    check_new(args.out, args.overwrite)
    pipe, evaluator = load_pipeline(), load_evaluator()
    prompts = [full_caption(s, COLOURS[(i + j) % 6], t) for i, s in enumerate(SHAPES) for j, t in enumerate(TEXTURES * 2)]
    seeds = list(range(len(prompts)))
    with run_folder(args.out, "demo", {"prompts": prompts, "seeds": seeds, **sampling_defaults(pipe)}, args.overwrite) as run:
        run.record["model"] = describe_model(pipe, None)
        with tqdm(total=len(prompts), desc="generate", unit="img") as bar:
            images = generate(pipe, prompts, seeds, progress=bar.update)
        image_grid(images, cols=6, row_labels=list(SHAPES)).save(run.path / "grid.png")
        predicted = evaluator.predict(images)
        expected = {"shape": [p.split()[3] for p in prompts], "colour": [p.split()[1] for p in prompts],
                    "texture": [p.split()[2] for p in prompts]}
        run.metrics = {"accuracy": {k: float(np.mean([a == b for a, b in zip(predicted[k], expected[k])]))
                                    for k in expected}, "n_images": len(prompts)}
    print(f"grid: {args.out}/grid.png\nmetrics: {args.out}/metrics.json {run.metrics['accuracy']}")
    return 0
