"""`cadiff shapes train`: rebuild the embedded model and evaluator from a seed."""

from __future__ import annotations

import argparse

from cadiff.cli.common import device, positive_int


def register(sub) -> None:
    p = sub.add_parser("shapes", help="the shapes world: rebuild the embedded model")
    shapes_sub = p.add_subparsers(dest="shapes_command", required=True, metavar="COMMAND")
    t = shapes_sub.add_parser("train", help="train the embedded model and its evaluator from scratch")
    t.add_argument("--out", required=True, help="folder to create: pipeline/, evaluator/, train_log.json")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--unet-steps", type=positive_int, default=None, help="override the UNet training steps")
    t.add_argument("--unet-batch", type=positive_int, default=None, help="override the UNet batch size")
    t.add_argument("--device", type=device, default="cpu", help="torch device to train on (cpu, cuda); the data and noise "
                   "are drawn on the CPU either way")
    t.add_argument("--tiny", action="store_true", help="seconds-long settings (smoke test, not a usable model)")
    t.add_argument("--overwrite", action="store_true")
    t.set_defaults(func=train)


def train(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from cadiff.files.io import check_new
    from cadiff.worlds.shapes.train import TrainConfig, train_shapes_model

    check_new(args.out, args.overwrite)
    cfg = TrainConfig.tiny() if args.tiny else TrainConfig()
    cfg = replace(cfg, seed=args.seed)
    if args.unet_steps is not None:
        cfg = replace(cfg, unet_steps=args.unet_steps)
    if args.unet_batch is not None:
        cfg = replace(cfg, unet_batch=args.unet_batch)
    train_shapes_model(args.out, cfg, overwrite=args.overwrite, device=args.device)
    print(f"wrote {args.out}/pipeline, {args.out}/evaluator and {args.out}/train_log.json")
    return 0
