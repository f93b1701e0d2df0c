"""`cadiff demo`: the main job on the embedded model, as `make demo` runs it: a calibrated erase of 'circle' (the
search finds the setting, the confirmation on new seeds proves it) with its certificate, before/after grid and
frontier picture.

Example:
    $ cadiff demo --out runs/demo
"""

from __future__ import annotations

import argparse

DEMO_CONCEPT = "circle"


def register(sub) -> None:
    p = sub.add_parser("demo", help="erase 'circle' from the embedded shapes model, calibrated, and show the "
                                    "certificate")
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cadiff.cli import build_parser

    argv = ["erase", DEMO_CONCEPT, "--out", args.out] + (["--overwrite"] if args.overwrite else [])
    print("cadiff " + " ".join(argv))
    erase_args = build_parser().parse_args(argv)
    return erase_args.func(erase_args)
