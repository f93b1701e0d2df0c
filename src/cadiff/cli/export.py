"""`cadiff export RUN --format F --out PATH`: an edit run (erase, amplify, harden) written where people use models: a
diffusers folder, a ComfyUI or A1111 / Forge patch file, a peft adapter, or a single-file checkpoint.

The edited weights are the run's pipeline/ folder (or, for a run that did not keep one, its mask put on the model);
the formats that write a difference read the model the run was made from (its recorded --model, or the one given),
checked against the fingerprint the run recorded.

Example:
    $ cadiff export runs/no-circle --format comfyui --out no-circle.safetensors
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cadiff.cli.common import add_model_options
from cadiff.errors import BadInput, MissingFile


def register(sub, argv=()) -> None:
    from cadiff.exports import FORMATS

    p = sub.add_parser("export", help="write an edit run as a diffusers folder, a ComfyUI / A1111 patch, a peft "
                                      "adapter or a single-file checkpoint")
    p.add_argument("run", help="the run folder of cadiff erase, amplify or harden")
    p.add_argument("--format", required=True, choices=list(FORMATS),
                   help="; ".join(f"{name}: {cls.summary}" for name, cls in FORMATS.items()))
    p.add_argument("--out", required=True, help="the file (or folder, for diffusers and peft) to write")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    add_model_options(p, default="the model the run records")
    p.set_defaults(func=run, writes_report=False)


def run(args: argparse.Namespace) -> int:
    from cadiff.exports import Edit, export, get_format
    from cadiff.io.files import check_new, read_json

    fmt = get_format(args.format)
    folder = Path(args.run)
    if not (folder / "run.json").is_file():
        raise MissingFile(f"{folder}/run.json not found: give the run folder of cadiff erase, amplify or harden")
    record = read_json(folder / "run.json")
    if "edit" not in record:
        raise BadInput(f"{folder} is a '{record.get('command')}' run, which made no edit; export the run folder of "
                       "cadiff erase, amplify or harden")
    edited_folder, mask_file = folder / "pipeline", folder / "mask.safetensors"
    if not edited_folder.is_dir() and not mask_file.is_file():
        raise MissingFile(f"{folder} holds neither the edited pipeline (pipeline/) nor a mask: run the edit again "
                          "without --no-export")
    check_new(args.out, args.overwrite, folder=not fmt.file)
    base = _base(args, record) if fmt.difference or not edited_folder.is_dir() else None
    edited = _edited(args, edited_folder, mask_file, base)
    out = export(Edit(edited, base, record["edit"]), args.out, args.format, args.overwrite)
    print(f"wrote {out} ({args.format})")
    return 0


def _base(args: argparse.Namespace, record: dict):
    """The model the run was made from, checked against the fingerprint the run recorded."""
    from cadiff.models import load_pipeline
    from cadiff.models.loading import model_fingerprint

    settings = record.get("settings", {})
    model = args.model if args.model is not None else settings.get("model")
    config = args.config if args.config is not None else settings.get("config")
    pipe = load_pipeline(model, dtype=args.dtype or settings.get("dtype"), device=args.device, config=config)
    recorded = record.get("model", {}).get("fingerprint")
    if recorded is not None and model_fingerprint(pipe) != recorded:
        raise BadInput(f"the model {model or 'embedded'} is not the one {args.run} was made from (fingerprint "
                       f"{model_fingerprint(pipe)}, the run recorded {recorded}); give that model with --model")
    return pipe


def _edited(args: argparse.Namespace, folder: Path, mask_file: Path, base):
    """The run's edited pipeline: its pipeline/ folder, else its mask on a copy of the base model."""
    from cadiff.attribution.mask import Mask
    from cadiff.editing import edited_copy
    from cadiff.models import load_pipeline

    if folder.is_dir():
        return load_pipeline(folder, dtype=args.dtype, device=args.device)
    return edited_copy(base, Mask.load(mask_file))
