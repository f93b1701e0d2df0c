"""`cadiff attack EDITED CONCEPT`: does an erased concept come back? The prompt, learned-token and weight-revival
attacks against an edited model (a run folder of `cadiff erase`, its mask file, or an edited pipeline folder), each
also run on the original model as the reference; writes attack.json, grid.png (each attack's images on the edited
model) and the report.

`cadiff harden EDITED CONCEPT`: grow a zeroing erase by adversarial rounds against the learned token (a token
learned on the edited model, its prompt scored with the guard rule and its top weights zeroed, while the kept
concepts hold); writes the hardened edit like `cadiff erase` and hardening.json.

Example:
    $ cadiff attack runs/no-circle circle --out runs/attack-circle
    $ cadiff attack runs/esd-circle circle --attacks prompt token --token-steps 300 --out runs/attack-esd
    $ cadiff harden runs/no-circle circle --out runs/no-circle-hardened
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cadiff.cli.common import add_config_flags, add_judge_options, add_model_options, add_output_options, \
    check_out_folder, given_options, judge_from_args, load_from_args, positive_int
from cadiff.distributed import is_main
from cadiff.errors import BadInput, MissingFile


def register(sub, argv=()) -> None:
    from cadiff.attacks import ATTACKS

    p = sub.add_parser("attack", help="attack an erased model: prompts, a learned token, weight revival")
    p.add_argument("edited", help="the edited model: a run folder of cadiff erase, its mask.safetensors, or an "
                                  "edited pipeline folder")
    p.add_argument("concept", help="the erased concept")
    p.add_argument("--attacks", nargs="+", choices=list(ATTACKS), default=list(ATTACKS),
                   help="the attacks to run (default: all)")
    _add_preserve_and_judge(p)
    p.add_argument("--per-prompt", type=positive_int, default=2, help="images (seeds) per prompt (default 2)")
    add_config_flags(p, {name: ATTACKS.lookup(name).config_class for name in ATTACKS})
    add_model_options(p)
    add_output_options(p)
    p.set_defaults(func=run)

    from cadiff.attacks import HardenConfig

    h = sub.add_parser("harden", help="harden a zeroing erase against the learned-token attack")
    h.add_argument("edited", help="the erase: a run folder of cadiff erase (with mask.safetensors) or a mask file")
    h.add_argument("concept", help="the erased concept")
    _add_preserve_and_judge(h)
    h.add_argument("--no-export", action="store_true", help="write the mask only, not the edited pipeline folder")
    add_config_flags(h, {"hardening": HardenConfig})
    add_model_options(h)
    add_output_options(h)
    h.set_defaults(func=run_harden)


def _add_preserve_and_judge(p) -> None:
    p.add_argument("--preserve", nargs="+", default=None, metavar="CONCEPT",
                   help="concepts to keep (default on the embedded model: every other concept)")
    add_judge_options(p)


def load_edited(path: str, original, args: argparse.Namespace | None = None):
    """The edited pipeline: a mask (a run folder's mask.safetensors, or a mask file) put on a copy of the
    original, or an edited pipeline folder (a run folder's pipeline/), loaded with the model options of `args`
    (--dtype, --device, --truncate) as the original was, or without `args` on the original's device; either way
    it cuts long prompts when the original does (`allow_truncation`)."""
    from cadiff.editing import edited_copy
    from cadiff.attribution.mask import Mask
    from cadiff.models import load_pipeline
    from cadiff.models.vocabulary import TRUNCATE_ATTRIBUTE, allow_truncation

    where = Path(path)
    if where.is_dir() and (where / "mask.safetensors").is_file():
        where = where / "mask.safetensors"
    elif where.is_dir() and (where / "pipeline" / "model_index.json").is_file():
        where = where / "pipeline"
    if where.is_file():
        return edited_copy(original, Mask.load(where)), str(where)
    if (where / "model_index.json").is_file():
        if args is not None:  # the same loading as the original's, every model option but which model
            edited = load_from_args(argparse.Namespace(**{**vars(args), "model": str(where), "config": None}))
        else:
            edited = load_pipeline(str(where), device=str(original.device))
        if hasattr(original, TRUNCATE_ATTRIBUTE) and not hasattr(edited, TRUNCATE_ATTRIBUTE):
            allow_truncation(edited)
        return edited, str(where)
    raise MissingFile(f"{path}: neither a run folder with mask.safetensors or pipeline/, a mask file, nor a "
                      "pipeline folder")


def mask_path(path: str) -> Path:
    """The mask of a run folder of cadiff erase, or a mask file."""
    where = Path(path)
    if where.is_dir():
        where = where / "mask.safetensors"
    if not where.is_file():
        raise MissingFile(f"{path}: neither a mask file nor a run folder with mask.safetensors (the hardening "
                          "grows a zeroing erase: CAD or prune)")
    return where


def run_harden(args: argparse.Namespace) -> int:
    from cadiff.attacks import HardenConfig, harden
    from cadiff.config import make_config
    from cadiff.io.files import write_json
    from cadiff.attribution.mask import Mask
    from cadiff.io.runs import run_folder
    from cadiff.models import describe_model

    check_out_folder(args)
    config = make_config(HardenConfig, given_options(args, HardenConfig), "the hardening")
    source = mask_path(args.edited)
    mask = Mask.load(source)
    original = load_from_args(args)
    judge = judge_from_args(args, original)
    settings = {"edited": str(source), "concept": args.concept, "preserve": args.preserve, "model": args.model,
                "truncate": args.truncate, **config.to_dict()}
    with run_folder(args.out, "harden", settings, args.overwrite) as run_:
        run_.record["model"] = describe_model(original, args.model)
        result = harden(original, mask, args.concept, config, preserve=args.preserve, judge=judge)
        run_.record["edit"] = result.record()
        if is_main():  # several processes: the others computed the same edit (images are rendered by all)
            result.write(run_.path, export=not args.no_export)
        write_json(run_.path / "hardening.json", result.info)
        run_.metrics = {"hardening": result.info["hardening"], "zeroed_before": result.info["zeroed_before"],
                        "zeroed_after": result.info["zeroed_after"]}
    if not is_main():  # several processes: rank 0 wrote the hardened edit and says what it did
        return 0
    for step in result.info["hardening"]:
        print(f"  round {step['round']}: the learned token brings '{args.concept}' back in "
              f"{step['token_success']:.0%} of images; {step['outcome']}")
    print(f"zeroed {result.info['zeroed_before']} -> {result.info['zeroed_after']} weights; wrote {args.out}/mask"
          ".safetensors and hardening.json")
    return 0


def run(args: argparse.Namespace) -> int:
    from cadiff.attacks import ATTACKS, attack
    from cadiff.io.files import write_json
    from cadiff.io.runs import run_folder
    from cadiff.models import describe_model
    from cadiff.report.grids import image_grid, stack_grids

    check_out_folder(args)
    options = {name: given_options(args, ATTACKS.lookup(name).config_class) for name in args.attacks}
    foreign = sorted(set(given_options(args, *(ATTACKS.lookup(n).config_class for n in ATTACKS)))
                     - {k for o in options.values() for k in o})
    if foreign:
        raise BadInput(f"{', '.join('--' + k.replace('_', '-') for k in foreign)}: options of attacks not run "
                       f"(--attacks {' '.join(args.attacks)})")
    original = load_from_args(args)
    edited, source = load_edited(args.edited, original, args)
    judge = judge_from_args(args, original)
    settings = {"edited": source, "concept": args.concept, "attacks": args.attacks, "preserve": args.preserve,
                "per_prompt": args.per_prompt, "options": options, "model": args.model, "truncate": args.truncate}
    with run_folder(args.out, "attack", settings, args.overwrite) as run_:
        run_.record["model"] = describe_model(original, args.model)
        result = attack(original, edited, args.concept, attacks=args.attacks, judge=judge, preserve=args.preserve,
                        per_prompt=args.per_prompt, options=options)
        write_json(run_.path / "attack.json", result.to_dict())
        run_.metrics = result.to_dict()
        shown = [o for o in result.outcomes if o.images is not None and len(o.images)]
        if shown:
            stack_grids([image_grid(o.images[:16], cols=16) for o in shown],
                        titles=[f"{o.name} attack on the edited model" for o in shown]).save(run_.path / "grid.png")
    if is_main():  # several processes: each rendered its share of the images, rank 0 wrote the results
        print(result.table())
        print(f"wrote {args.out}/attack.json and grid.png")
    return 0
