"""`cadiff shapes train`: rebuild the embedded model and evaluator from a seed, or train its transformer sibling
(`--denoiser dit`: an SD3-style MMDiT on the shipped VAE)."""

from __future__ import annotations

import argparse

from cadiff.cli.common import device, positive_int
from cadiff.errors import BadInput
from cadiff.worlds.shapes.world import COLOURS, SHAPES, TEXTURES


def register(sub, argv=()) -> None:
    p = sub.add_parser("shapes", help="the shapes world: rebuild the embedded model")
    shapes_sub = p.add_subparsers(dest="shapes_command", required=True, metavar="COMMAND")
    t = shapes_sub.add_parser("train", help="train the embedded model and its evaluator from scratch")
    t.add_argument("--out", required=True, help="folder to create: pipeline/, evaluator/, train_log.json")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--denoiser", choices=("unet", "dit"), default="unet",
                   help="unet (default: the embedded model, with its evaluator and VAE) or dit (an SD3-style MMDiT "
                        "with rectified flow, on the shipped VAE and judged by the shipped evaluator)")
    t.add_argument("--steps", "--unet-steps", dest="steps", type=positive_int, default=None,
                   help="override the denoiser's training steps")
    t.add_argument("--batch", "--unet-batch", dest="batch", type=positive_int, default=None,
                   help="override the denoiser's batch size")
    t.add_argument("--exclude", nargs="+", default=(), choices=SHAPES + COLOURS + TEXTURES, metavar="VALUE",
                   help="values (shapes, colours, textures) the U-Net never sees in training: a model that never saw "
                        "a concept, the scale of the learned-token attack (the evaluator and VAE see everything)")
    t.add_argument("--device", type=device, default="cpu", help="torch device to train on (cpu, cuda); the data and noise "
                   "are drawn on the CPU either way")
    t.add_argument("--tiny", action="store_true", help="seconds-long settings (smoke test, not a usable model)")
    t.add_argument("--overwrite", action="store_true")
    t.set_defaults(func=train)


def train(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from cadiff.io.files import check_new
    from cadiff.worlds.shapes.dit import DiTTrainConfig, train_shapes_dit
    from cadiff.worlds.shapes.train import TrainConfig, train_shapes_model

    if args.exclude and args.denoiser != "unet":
        raise BadInput("--exclude trains the U-Net only; leave out --denoiser dit")
    check_new(args.out, args.overwrite)
    config, run, steps, batch = {"unet": (TrainConfig, train_shapes_model, "unet_steps", "unet_batch"),
                                 "dit": (DiTTrainConfig, train_shapes_dit, "steps", "batch")}[args.denoiser]
    cfg = replace(config.tiny() if args.tiny else config(), seed=args.seed)
    if args.steps is not None:
        cfg = replace(cfg, **{steps: args.steps})
    if args.batch is not None:
        cfg = replace(cfg, **{batch: args.batch})
    if args.exclude:
        cfg = replace(cfg, exclude=tuple(args.exclude))
    run(args.out, cfg, overwrite=args.overwrite, device=args.device)
    print(f"wrote {args.out}/pipeline, {args.out}/evaluator and {args.out}/train_log.json")
    return 0
