"""`cadiff evaluate`: one image per prompt row (its own seed), scored by metric adapters into a resumable results
folder (run.json, rows.csv, images/, metrics.json, grids/).

Example:
    $ cadiff evaluate --prompts shapes --out runs/eval-base
    $ cadiff evaluate --prompts shapes --mask circle.mask.safetensors --out runs/eval-no-circle
    $ cadiff evaluate --model ./sd14 --prompts unsafe-prompts4703.csv --metrics nudenet --out runs/i2p
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tqdm.auto import tqdm

from cadiff.cli.common import add_config_flags, add_model_options, given_options, load_from_args, positive_int
from cadiff.evaluation.runner import EvaluationConfig
from cadiff.distributed import is_main
from cadiff.errors import BadInput, MissingFile


def register(sub, argv=()) -> None:
    p = sub.add_parser("evaluate", help="evaluate a (possibly edited) model on a prompt set; resumable")
    p.add_argument("--prompts", required=True,
                   help="CSV with a 'prompt' column (evaluation_seed, class/artist/categories optional), a text file "
                        "with one prompt per line, or 'shapes' / 'shapes:circle' / 'shapes-balanced' (built-in "
                        "shapes-world sets)")
    p.add_argument("--per-prompt", type=positive_int, default=1,
                   help="shapes sets: seeds per prompt (shapes) or repeats of the design (shapes-balanced)")
    p.add_argument("--seed", type=int, default=0, help="seed of row 0 when the prompt set has no seeds")
    p.add_argument("--mask", default=None, help="a CAD mask file to apply before evaluating (recorded with its hash)")
    p.add_argument("--judge-weights", default=None,
                   help="the shapes metric's judge: a world evaluator folder (default: the shipped one)")
    p.add_argument("--clip-weights", default=None,
                   help="CLIP folder or cached hub id (default openai/clip-vit-base-patch32)")
    p.add_argument("--resnet-weights", default=None,
                   help="ResNet-50 folder or cached hub id (default microsoft/resnet-50)")
    p.add_argument("--fid-reference", default=None, help="folder of reference (real) images for FID")
    p.add_argument("--fid-weights", default=None, help="FID Inception weights file (default: torch hub cache)")
    p.add_argument("--lpips-reference", default=None, help="results folder of the unedited model (same prompts)")
    p.add_argument("--lpips-net", default="alex", choices=["alex", "vgg"])
    p.add_argument("--lpips-weights", default=None,
                   help="LPIPS backbone weights file in torchvision's layout (default: torch hub cache)")
    p.add_argument("--lpips-heads", default=None,
                   help="LPIPS v0.1 heads file (default: the one torchmetrics ships for --lpips-net)")
    p.add_argument("--nudenet-threshold", type=float, default=0.5)
    add_config_flags(p, {"evaluate": EvaluationConfig})
    add_model_options(p)
    p.add_argument("--out", required=True, help="results folder: created, or continued if it holds this same run")
    p.add_argument("--overwrite", action="store_true", help="replace a results folder that holds another run")
    p.set_defaults(func=run)


def _apply_mask(pipe, path: str) -> tuple[object, dict]:
    from cadiff.editing import Mask, edited_copy
    from cadiff.evaluation import file_sha256

    mask = Mask.load(path)
    edit = {"kind": "cad-mask", "file": str(path), "sha256": file_sha256(path), "weights_zeroed": len(mask)}
    return edited_copy(pipe, mask), edit


def run(args: argparse.Namespace) -> int:
    from cadiff.evaluation import evaluate, load_prompts
    from cadiff.evaluation.runner import check_out, check_seeds
    from cadiff.models.loading import resolve_sampling, sampling_source
    from cadiff.worlds import world_of

    given = given_options(args, EvaluationConfig)
    config = EvaluationConfig(**given)
    prompts = load_prompts(args.prompts, per_prompt=args.per_prompt, seed=args.seed)
    check_seeds(prompts.rows, prompts.source)
    if is_main():  # before loading the model (several processes: rank 0's folder)
        check_out(args.out, args.overwrite)
    if args.mask and not Path(args.mask).is_file():
        raise MissingFile(f"mask file {args.mask} not found; make one with `cadiff attribute` or "
                          "`cadiff erase`")
    pipe = load_from_args(args)
    edit = None
    if args.mask:
        pipe, edit = _apply_mask(pipe, args.mask)
    if "metrics" not in given and world_of(pipe) is None:
        raise BadInput("choose metrics with --metrics (e.g. clip,nudenet): the shapes evaluator only reads the "
                       "embedded shapes model's images")
    options = {k: getattr(args, k) for k in ("judge_weights", "clip_weights", "resnet_weights", "fid_reference",
                                             "fid_weights", "lpips_reference", "lpips_net", "lpips_weights",
                                             "lpips_heads", "nudenet_threshold")}
    steps, guidance = resolve_sampling(pipe, config.steps, config.guidance)
    unset = config.steps is None or config.guidance is None
    print(f"sampling: {steps} steps, guidance {guidance:g}" + (f" (unset ones: {sampling_source(pipe)})" if unset
                                                               else ""))
    bars = []  # the bar appears once evaluate has checked its inputs (its first progress call)

    def progress(n: int) -> None:
        if not bars:
            bars.append(tqdm(total=len(prompts), desc="evaluate", unit="img"))
        bars[0].update(n)

    try:
        summary = evaluate(pipe, prompts, args.out, config, metric_options=options, edit=edit,
                           model_source=args.model, overwrite=args.overwrite, progress=progress)
    finally:
        for bar in bars:
            bar.close()
    if not is_main():  # several processes: rank 0 wrote the results and says what they are
        return 0
    for line in headline(summary):
        print(line)
    print(f"wrote {args.out}/metrics.json ({summary['rows']} rows), rows.csv, images/ and grids/")
    return 0


def headline(summary: dict) -> list[str]:
    """One line per metric with its main number(s)."""
    lines = []
    for name, m in summary["metrics"].items():
        if name == "shapes":
            value = ", ".join(f"{k} {v:.3f}" for k, v in m["accuracy"].items() if v is not None)
            value = value or "no row names a shape, colour or texture, so none was scored"
        elif name == "nudenet":
            value = f"{m['nude_images']} nude images (rate {m['nude_rate']})"
        elif name == "object":
            value = ", ".join(f"{k} {v:.3f}" for k, v in m["accuracy"].items())
        else:
            value = ", ".join(f"{k} {v}" for k, v in m.items() if k in ("mean", "fid"))
        lines.append(f"{name}: {value}")
    return lines
