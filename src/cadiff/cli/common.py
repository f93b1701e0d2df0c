"""Options and error handling shared by every command."""

from __future__ import annotations

import argparse
import math
import sys

import torch


GOAL_NOT_MET = 3  # exit code of a calibrated erase that missed its goal (its run folder is complete)
NOT_PROVEN = 4  # exit code of a calibrated erase that met its goal on point estimates, not proven by its bounds

def positive_int(text: str) -> int:
    """argparse type of the CLI's own flags: an integer >= 1."""
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def annotation(f) -> str:
    """A config field's annotation as written ('int', 'tuple[float, ...]'), whether the module that declares it
    postpones annotations (strings) or not (types)."""
    return f.type.__name__ if f.type in (int, float, str, bool, tuple) else str(f.type)


def flag_type(f):
    """The argparse type of a config field's flag, from its annotation (int, float, a tuple of floats or of
    words written comma-separated; anything else is text) and its bounds (`option(low=, high=, low_open=)`); None for text."""
    kind = annotation(f)
    if kind.startswith("tuple[str") or kind == "tuple":
        return lambda text: tuple(part.strip() for part in text.split(",") if part.strip())
    if kind.startswith("tuple[float"):
        parse, name = (lambda text: tuple(float(part) for part in text.split(","))), "numbers separated by commas"
    elif kind.startswith("int"):
        parse, name = int, "an integer"
    elif kind.startswith("float"):
        parse, name = float, "a number"
    else:
        return None
    from cadiff.config import bounds_text, within

    def convert(text: str):
        try:
            value = parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {name}, got {text!r}") from None
        if not all(within(f.metadata, v) for v in (value if isinstance(value, tuple) else (value,))):
            raise argparse.ArgumentTypeError(f"must be {bounds_text(f.metadata)}, got {text}")
        return value

    convert.__name__ = name  # argparse names the type in its error
    return convert


def report_error(exc: BaseException) -> int:
    """A CadiffError (something the user can fix) as one line; exit code 2."""
    if isinstance(exc, OSError) and exc.errno is not None:  # raised by the system, not by cadiff's own checks
        return report_os_error(exc)
    print(f"cadiff: error: {exc}", file=sys.stderr)
    return 2


def report_os_error(exc: OSError) -> int:
    """An operating-system failure (unwritable place, full disk, ...) as one line naming the path and the reason."""
    where = f" {exc.filename}" if exc.filename else ""
    reason = (exc.strerror or str(exc)).lower()
    print(f"cadiff: error:{where}: {reason}; check the path, its permissions and the free space", file=sys.stderr)
    return 2


def add_config_flags(p: argparse.ArgumentParser, configs: dict[str, type]) -> None:
    """One flag per field of the config dataclasses (`configs`: whose config -> class; a field several share is
    one flag, its help naming them). A flag not given stays out of the namespace (see `given_options`)."""
    from dataclasses import fields

    from cadiff.config import flag_name

    owners: dict[str, list[str]] = {}
    first: dict[str, object] = {}
    for owner, cls in configs.items():
        for f in fields(cls):
            owners.setdefault(f.name, []).append(owner)
            first.setdefault(f.name, f)
    for name, f in first.items():
        meta = f.metadata
        text = meta.get("help", "")
        if len(configs) > 1:
            text += f" [{', '.join(owners[name])}]"
        if annotation(f) == "bool":  # a switch: given, the field is True
            p.add_argument(flag_name(f), dest=name, default=argparse.SUPPRESS, help=text, action="store_const",
                           const=True)
            continue
        kwargs = {"type": flag_type(f)} if flag_type(f) else {}
        if meta.get("choices"):
            kwargs["choices"] = list(meta["choices"])
        p.add_argument(flag_name(f), dest=name, default=argparse.SUPPRESS, help=text, **kwargs)


FOREIGN = "foreign__"  # the namespace prefix of another method's flags, parsed only to be refused by name


def add_foreign_flags(p: argparse.ArgumentParser, configs: dict[str, type], chosen: type) -> None:
    """The flags of the other methods' configs (`configs`: method -> class) that `chosen` lacks, hidden from
    --help: given, they are refused by `refuse_foreign_flags` naming the methods that take them (and, where the
    chosen config says why it lacks one, the reason)."""
    from dataclasses import fields

    from cadiff.config import flag_name

    owners: dict[str, tuple[str, list[str]]] = {}
    for method, cls in configs.items():
        for f in fields(cls):
            if f.name not in chosen.names():
                owners.setdefault(f.name, (flag_name(f), []))[1].append(method)
    for name, (flag, methods) in owners.items():
        p.add_argument(flag, dest=f"{FOREIGN}{name}", default=argparse.SUPPRESS, help=argparse.SUPPRESS,
                       metavar=",".join(methods))
    add_foreign_owners(p, owners, chosen)


def add_foreign_owners(p: argparse.ArgumentParser, owners: dict[str, tuple[str, list[str]]], chosen=None) -> None:
    """Record which methods take the hidden flags `owners` names (dest name -> (flag, methods))."""
    known = dict(p.get_default(f"{FOREIGN}owners") or {})
    known.update(owners)
    p.set_defaults(**{f"{FOREIGN}owners": known})
    if chosen is not None:
        p.set_defaults(**{f"{FOREIGN}chosen": chosen})


def add_foreign_judge_flags(p: argparse.ArgumentParser, methods: list[str]) -> None:
    """The judges' flags, hidden, for a method that does not judge its edit: given, they are refused naming
    `methods` (those that do)."""
    owners = {}
    for flag in ("--judge", "--clip-weights", "--second-judge", "--second-clip-weights"):
        name = flag[2:].replace("-", "_")
        p.add_argument(flag, dest=f"{FOREIGN}{name}", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        owners[name] = (flag, methods)
    add_foreign_owners(p, owners)


def refuse_foreign_flags(args: argparse.Namespace, what: str) -> None:
    """BadInput naming the flags given that belong to methods other than `what` (see `add_foreign_flags`)."""
    owners, chosen = getattr(args, f"{FOREIGN}owners", {}), getattr(args, f"{FOREIGN}chosen", None)
    given = [k.removeprefix(FOREIGN) for k in vars(args) if k.startswith(FOREIGN) and k.removeprefix(FOREIGN)
             in owners]
    if not given:
        return
    from cadiff.errors import BadInput

    name = given[0]
    flag, methods = owners[name]
    reason = getattr(chosen, "not_options", {}).get(name)
    raise BadInput(f"{flag}: " + (reason if reason else f"not an option of {what}; --method "
                                  f"{' or '.join(methods)} takes it (--method {methods[0]} --help lists its flags)"))


def peek_flag(argv, flag: str) -> str | None:
    """The value of `flag` in a command line before it is parsed ('--method esd' or '--method=esd'), else None."""
    argv = list(argv or [])
    for i, item in enumerate(argv):
        if item == flag and i + 1 < len(argv):
            return argv[i + 1]
        if item.startswith(flag + "="):
            return item.split("=", 1)[1]
    return None


def given_options(args: argparse.Namespace, *configs: type) -> dict:
    """The config fields whose flags were given on the command line, with their values."""
    names = {n for cls in configs for n in cls.names()}
    return {k: v for k, v in vars(args).items() if k in names}


def device(text: str) -> str:
    """A torch device name that this machine has and cadiff runs on ('cpu', 'cuda', 'cuda:1', 'mps' on a Mac)."""
    try:
        dev = torch.device(text)
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"unknown device '{text}': use --device cpu, cuda[:N] or mps") from None
    if dev.type not in ("cpu", "cuda", "mps"):
        raise argparse.ArgumentTypeError(f"cadiff cannot run on device '{text}': use --device cpu, cuda[:N] or mps")
    if dev.type == "cuda" and (not torch.cuda.is_available() or (dev.index or 0) >= torch.cuda.device_count()):
        raise argparse.ArgumentTypeError(f"no CUDA device '{text}' on this machine: use --device cpu")
    if dev.type == "mps" and (not torch.backends.mps.is_available() or (dev.index or 0) > 0):
        raise argparse.ArgumentTypeError(f"no MPS device '{text}' on this machine (Apple silicon only): "
                                         "use --device cpu")
    return text


def guidance_scale(text: str) -> float:
    """argparse type: a classifier-free guidance scale, a finite number >= 0."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def add_model_options(p: argparse.ArgumentParser, default: str = "the embedded shapes U-Net") -> None:
    p.add_argument("--model", default=None,
                   help="diffusers folder, .safetensors file, cached hub id, or embedded:dit (the embedded model's MMDiT "
                        f"sibling; default: {default})")
    p.add_argument("--config", default=None, help="with a single .safetensors file: its diffusers config folder/id")
    p.add_argument("--dtype", default=None, choices=["fp32", "fp16", "bf16"], help="weights dtype (default: as saved)")
    p.add_argument("--device", type=device, default="cuda" if torch.cuda.is_available() else "cpu",
                   help="torch device (default: cuda when there is one)")
    p.add_argument("--truncate", action="store_true",
                   help="cut prompts longer than the text encoder reads, with a warning naming what was cut "
                        "(default: refuse them)")


def add_judge_options(p) -> None:
    """--judge and --clip-weights: what says whether an image shows a concept (calibrated erase, attacks, hardening)."""
    p.add_argument("--judge", default=None,
                   help="says whether an image shows a concept: world (the embedded model's evaluator, its "
                        "default), clip (--clip-weights), nudenet, or MODULE:FUNCTION / FILE.py:FUNCTION "
                        "(images, concept) -> bools")
    p.add_argument("--clip-weights", default=None, help="--judge clip: a local CLIP folder or cached hub id")


def add_second_judge_options(p) -> None:
    """--second-judge and --second-clip-weights: the calibrated erase's independent confirming judge."""
    p.add_argument("--second-judge", default=None,
                   help="an independent judge that confirms a calibrated erase beside --judge (the certificate is "
                        "proven only where both agree): as --judge (default: the world's pixel reader on the "
                        "embedded model; elsewhere none, and the certificate is at most 'met, not proven')")
    p.add_argument("--second-clip-weights", default=None, help="--second-judge clip: a local CLIP folder or hub id")


def judge_from_args(args: argparse.Namespace, pipe, second: bool = False):
    """The judge `add_judge_options`' flags name, for `pipe`; with `second`, the one `--second-judge` names (None
    when not given: the calibrated erase's default)."""
    from cadiff.evaluation.judges import as_judge

    spec, weights = ((args.second_judge, args.second_clip_weights) if second else (args.judge, args.clip_weights))
    if second and spec is None:
        return None
    return as_judge(spec, pipe=pipe, **({"weights": weights} if weights else {}))


def add_sampling_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--steps", type=positive_int, default=None, help="sampling steps (default: the model's)")
    p.add_argument("--guidance", type=guidance_scale, default=None, help="classifier-free guidance (default: the model's)")
    p.add_argument("--batch-size", type=positive_int, default=64)


def add_output_options(p: argparse.ArgumentParser, required: bool = True, replay: bool = True) -> None:
    """--out and --overwrite; with `replay` (a command that writes run.json), --settings RUN/run.json too."""
    p.add_argument("--out", required=required, help="run folder to create (must not exist)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    if replay:
        p.add_argument("--settings", default=None, metavar="RUN/run.json",
                       help="replay a run of this command: its recorded settings (concepts, method, every setting) "
                            "are the defaults, and the flags given here change them")


def replay_defaults(parser: argparse.ArgumentParser, argv: list[str], path: str) -> list[str]:
    """Make the settings recorded in run.json `path` the defaults of the command `argv` names (its verbs, such as
    'erase' or 'sae train', must be the run's); returns the flags to add to the command line (the recorded
    --method, which picks the flags). BadInput for a file that is not a run of that command."""
    from pathlib import Path

    from cadiff.errors import BadInput, MissingFile
    from cadiff.io.files import read_json

    if not Path(path).is_file():
        raise MissingFile(f"--settings {path}: no such file; give a run folder's run.json")
    record = read_json(path)
    if not isinstance(record, dict) or not isinstance(record.get("settings"), dict):
        raise BadInput(f"--settings {path}: not a cadiff run.json (it has no settings); give a run folder's run.json")
    words = str(record.get("command")).split()
    given = [a for a in argv if not a.startswith("-")][:len(words)]
    if given != words:
        raise BadInput(f"--settings {path}: a run of 'cadiff {' '.join(words)}', not of 'cadiff {' '.join(given)}'")
    settings, sub = record["settings"], parser
    for word in words:
        sub = next(a for a in sub._actions if isinstance(a, argparse._SubParsersAction)).choices[word]
    for action in sub._actions:
        if action.dest in settings:
            action.default = settings[action.dest]
            if not action.option_strings:  # a positional: the recorded value stands in when none is given
                action.nargs, action.required = "*", False
    return ["--method", str(settings["method"])] if "method" in settings else []


def check_out_folder(args: argparse.Namespace) -> None:
    """That the run folder --out can be made (or, with --overwrite, replaced), before any work. With several
    processes rank 0 alone checks it: the folder is its own, it locks it, and no other rank touches it."""
    from cadiff.distributed import is_main
    from cadiff.io.files import check_new

    if is_main():
        check_new(args.out, args.overwrite)


def load_from_args(args: argparse.Namespace):
    from cadiff.models import load_pipeline
    from cadiff.models.vocabulary import allow_truncation

    from cadiff.distributed import local_device

    pipe = load_pipeline(args.model, dtype=args.dtype, device=local_device(args.device), config=args.config)
    return allow_truncation(pipe) if getattr(args, "truncate", False) else pipe


def sampling_kwargs(args: argparse.Namespace) -> dict:
    return {"steps": args.steps, "guidance": args.guidance, "batch_size": args.batch_size}
