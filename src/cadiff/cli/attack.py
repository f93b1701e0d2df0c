"""`cadiff attack EDITED CONCEPT`: does an erased concept come back? The prompt, learned-token and weight-revival
attacks against an edited model (a run folder of `cadiff erase`, its mask file, or an edited pipeline folder), each
also run on the original model as the reference; writes attack.json, grid.png (each attack's images on the edited
model) and the report.

Example:
    $ cadiff attack runs/no-circle circle --out runs/attack-circle
    $ cadiff attack runs/esd-circle circle --attacks prompt token --token-steps 300 --out runs/attack-esd
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cadiff.cli.common import add_config_flags, add_model_options, add_output_options, given_options, \
    load_from_args, positive_int


def register(sub) -> None:
    from cadiff.attacks import ATTACKS

    p = sub.add_parser("attack", help="attack an erased model: prompts, a learned token, weight revival")
    p.add_argument("edited", help="the edited model: a run folder of cadiff erase, its mask.safetensors, or an "
                                  "edited pipeline folder")
    p.add_argument("concept", help="the erased concept")
    p.add_argument("--attacks", nargs="+", choices=list(ATTACKS), default=list(ATTACKS),
                   help="the attacks to run (default: all)")
    p.add_argument("--keep", nargs="+", default=None, metavar="CONCEPT",
                   help="concepts to keep (default on the embedded model: every other concept)")
    p.add_argument("--judge", default=None, help="world (the embedded model's default), clip, nudenet or "
                                                 "MODULE:FUNCTION (as for cadiff erase)")
    p.add_argument("--clip-weights", default=None, help="--judge clip: a local CLIP folder or cached hub id")
    p.add_argument("--seeds", type=positive_int, default=2, help="seeds per prompt (default 2)")
    add_config_flags(p, {name: ATTACKS.lookup(name).config_class for name in ATTACKS})
    add_model_options(p)
    add_output_options(p)
    p.set_defaults(func=run)


def load_edited(path: str, original):
    """The edited pipeline: a mask (a run folder's mask.safetensors, or a mask file) put on a copy of the
    original, or an edited pipeline folder (a run folder's pipeline/)."""
    from cadiff.editing import edited_copy
    from cadiff.files.mask import Mask
    from cadiff.models import load_pipeline

    where = Path(path)
    if where.is_dir() and (where / "mask.safetensors").is_file():
        where = where / "mask.safetensors"
    elif where.is_dir() and (where / "pipeline" / "model_index.json").is_file():
        where = where / "pipeline"
    if where.is_file():
        return edited_copy(original, Mask.load(where)), str(where)
    if (where / "model_index.json").is_file():
        return load_pipeline(str(where), device=str(original.device)), str(where)
    raise FileNotFoundError(f"{path}: neither a run folder with mask.safetensors or pipeline/, a mask file, nor a "
                            "pipeline folder")


def run(args: argparse.Namespace) -> int:
    from cadiff.attacks import ATTACKS, attack
    from cadiff.evaluation.judges import as_judge
    from cadiff.files.io import check_new, write_json
    from cadiff.files.runs import run_folder
    from cadiff.models import describe_model
    from cadiff.report.grids import image_grid, stack_grids

    check_new(args.out, args.overwrite)
    options = {name: given_options(args, ATTACKS.lookup(name).config_class) for name in args.attacks}
    foreign = sorted(set(given_options(args, *(ATTACKS.lookup(n).config_class for n in ATTACKS)))
                     - {k for o in options.values() for k in o})
    if foreign:
        raise ValueError(f"{', '.join('--' + k.replace('_', '-') for k in foreign)}: options of attacks not run "
                         f"(--attacks {' '.join(args.attacks)})")
    original = load_from_args(args)
    edited, source = load_edited(args.edited, original)
    judge_options = {"weights": args.clip_weights} if args.clip_weights else {}
    judge = as_judge(args.judge, pipe=original, **judge_options)
    settings = {"edited": source, "concept": args.concept, "attacks": args.attacks, "keep": args.keep,
                "seeds": args.seeds, "options": options, "model": args.model}
    with run_folder(args.out, "attack", settings, args.overwrite) as run_:
        run_.record["model"] = describe_model(original, args.model)
        result = attack(original, edited, args.concept, attacks=args.attacks, judge=judge, keep=args.keep,
                        seeds=args.seeds, options=options)
        write_json(run_.path / "attack.json", result.to_dict())
        run_.metrics = result.to_dict()
        shown = [o for o in result.outcomes if o.images is not None and len(o.images)]
        if shown:
            stack_grids([image_grid(o.images[:16], cols=16) for o in shown],
                        titles=[f"{o.name} attack on the edited model" for o in shown]).save(run_.path / "grid.png")
    print(result.table())
    print(f"wrote {args.out}/attack.json and grid.png")
    return 0
