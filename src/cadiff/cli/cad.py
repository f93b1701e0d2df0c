"""`cadiff attribute | erase | amplify | apply`: CAD component attribution and edits, each into a run folder.

The settings flags come from the config dataclasses: `attribute` from AttributionConfig, `erase` / `amplify` from
the config of the method `--method` names, read first (`cadiff erase --method esd --help` shows ESD's flags); a
flag of another method is refused, naming the method that takes it.

`cadiff erase` runs the calibrated erase by default (`--method calibrated`): it searches CAD's settings against a
goal, judged by a judge, confirms the choice on new seeds and writes certificate.json; it exits with GOAL_NOT_MET
(3) when no setting met the goal (the best edit is still written), NOT_PROVEN (4) when the goal is met but not
proven. `--method cad` runs CAD at the settings given.

Example:
    $ cadiff erase circle --out runs/no-circle                      # calibrated, the embedded model's judge
    $ cadiff erase circle --method cad --preserve square triangle star cross heart --ratio 0.03 --out runs/plain
    $ cadiff erase circle --method esd --iterations 100 --lr 3e-4 --out runs/esd-circle
    $ cadiff apply runs/no-circle/mask.safetensors --out no-circle-model
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from typing import Sequence

from cadiff.attribution.config import AttributionConfig
from cadiff.attribution.objectives import OBJECTIVES
from cadiff.calibration import CalibratedConfig
from cadiff.cli.common import (GOAL_NOT_MET, NOT_PROVEN, add_config_flags, add_foreign_flags, add_foreign_judge_flags,
                               add_judge_options, check_out_folder,
                               add_model_options, add_output_options, add_second_judge_options, given_options,
                               judge_from_args, load_from_args, peek_flag, positive_int, refuse_foreign_flags)
from cadiff.editing.ablate import FILLS
from cadiff.editing.methods import default_method, get_method, methods_for
from cadiff.editing.result import slugs
from cadiff.distributed import is_main
from cadiff.errors import BadInput, MissingFile


def _concept_options(p: argparse.ArgumentParser, objective: str | None) -> None:
    p.add_argument("concepts", nargs="+", metavar="CONCEPT",
                   help="concept words or prompts (on the embedded model 'circle' means 'a circle', 'red' 'a red shape')")
    keep = p.add_mutually_exclusive_group()
    keep.add_argument("--preserve", nargs="+", default=[], metavar="CONCEPT",
                      help="concepts to keep: scores become target minus the mean of these (--preserve-rule)")
    keep.add_argument("--preserve-others", action="store_true",
                      help="embedded model: keep every concept of the shapes world except the targets (14 for one)")
    if objective is None:
        p.add_argument("--objective", choices=list(OBJECTIVES), default="erase")
    if objective in (None, "amplify"):
        p.add_argument("--images", default=None, help="amplify: a folder of real concept images (default: generate them)")
    if objective == "erase":
        keep.add_argument("--preserve-file", default=None, metavar="FILE",
                          help="concepts to keep, one per line (# starts a comment)")


def _edit_parser(sub, objective: str, argv: Sequence[str]) -> None:
    """The `erase` / `amplify` verb with the flags of the method `--method` names in `argv` (default: the
    objective's default method); the other methods' flags are parsed only to be refused by name."""
    names = [n for n in methods_for(objective) if not get_method(n).starts_from]
    default = default_method(objective).name
    chosen = peek_flag(argv, "--method") or default
    method = get_method(chosen) if chosen in names else get_method(default)  # argparse refuses an unknown one
    p = sub.add_parser(objective, help=f"{objective} concepts (default --method {default}: "
                                       f"{get_method(default).summary})")
    _concept_options(p, objective)
    p.add_argument("--method", choices=names, default=default,
                   help="; ".join(f"{n}: {get_method(n).summary}" for n in names) + f" (default {default}). "
                        "Give it first to see that method's flags with --help")
    add_config_flags(p.add_argument_group(f"--method {method.name}"), {method.name: method.config_class})
    add_foreign_flags(p, {n: get_method(n).config_class for n in names if n != method.name},
                      method.config_class)
    if method.judged:
        group = p.add_argument_group(f"--method {method.name}: judges")
        add_judge_options(group)
        add_second_judge_options(group)
    else:
        add_foreign_judge_flags(p, [n for n in names if get_method(n).judged])
    p.add_argument("--no-export", action="store_true", help="skip writing the edited pipeline folder")
    p.add_argument("--eval-repeats", type=positive_int, default=1,
                   help="embedded model: 36 evaluation images per repeat (each shape/colour 6x, texture 12x; default 1)")
    add_model_options(p)
    add_output_options(p)
    p.set_defaults(func=lambda a: run_edit(a, objective), images=None, judge=None, clip_weights=None,
                   second_judge=None, second_clip_weights=None)


def register(sub, argv=()) -> None:
    p = sub.add_parser("attribute", help="CAD scores of every component for concepts (safetensors + summary + plot)")
    _concept_options(p, None)
    add_config_flags(p, {"attribute": AttributionConfig})
    add_model_options(p)
    add_output_options(p)
    p.set_defaults(func=run_attribute)

    _edit_parser(sub, "erase", argv)
    _edit_parser(sub, "amplify", argv)

    p = sub.add_parser("apply", help="put a mask file on its model and write the edited pipeline folder")
    p.add_argument("mask", help="a mask file written by cadiff erase/amplify (mask.safetensors)")
    p.add_argument("--fill", choices=FILLS, default="zero",
                   help="zero: the paper's zeroing (default); resample: each masked weight takes a value drawn from "
                        "its own row's other weights, so the edit leaves no zero to locate (weight revival)")
    p.add_argument("--fill-seed", type=int, default=0, help="--fill resample: the seed of the draws (default 0)")
    p.add_argument("--force", action="store_true",
                   help="apply a mask file that records no model fingerprint, skipping the check that --model is the "
                        "model the mask was made for")
    add_model_options(p)
    add_output_options(p, replay=False)
    p.set_defaults(func=run_apply)


def read_concept_file(path: str) -> list[str]:
    """Concepts one per line, read as UTF-8; blank lines and # comments skipped. ValueError for a missing or empty
    file, or one that is not UTF-8 text."""
    from pathlib import Path

    from cadiff.evaluation.prompts import read_text_file

    if not Path(path).is_file():
        raise MissingFile(f"--preserve-file {path}: no such file")
    lines = [line.split("#", 1)[0].strip() for line in read_text_file(path, "--preserve-file").splitlines()]
    concepts = [line for line in lines if line]
    if not concepts:
        raise BadInput(f"--preserve-file {path} names no concept; write one concept per line")
    return concepts


def _inputs(args: argparse.Namespace) -> dict:
    """What run.json records besides the method's settings: the concepts and the model options."""
    keys = ("concepts", "preserve", "preserve_others", "preserve_file", "images", "objective", "eval_repeats",
            "no_export", "judge", "clip_weights", "second_judge", "second_clip_weights", "model", "config",
            "dtype", "device", "truncate")
    return {k: getattr(args, k) for k in keys if hasattr(args, k)}


def _preserve(args: argparse.Namespace) -> list[str]:
    """The concepts to keep the flags name (--preserve, or --preserve-file read)."""
    if getattr(args, "preserve_file", None):
        return read_concept_file(args.preserve_file)
    return list(args.preserve)


def run_attribute(args: argparse.Namespace) -> int:
    from cadiff.attribution import Concepts, attribute, check_concept_names
    from cadiff.worlds import others_in_world
    from cadiff.io.files import write_json
    from cadiff.io.runs import run_folder
    from cadiff.models import describe_model

    check_out_folder(args)
    config = AttributionConfig(**given_options(args, AttributionConfig))
    check_concept_names(args.concepts, args.preserve)
    pipe = load_from_args(args)
    keep = others_in_world(pipe, args.concepts) if args.preserve_others else args.preserve
    args.preserve = list(keep)  # run.json records the concepts kept
    uses_base = OBJECTIVES[args.objective].uses_base_prompt
    concepts = Concepts.on(pipe, args.concepts, keep, base_prompt=config.base_prompt if uses_base else None)
    with run_folder(args.out, "attribute", {**_inputs(args), **config.to_dict()}, args.overwrite) as run:
        run.record["model"] = describe_model(pipe, args.model)
        attrs = attribute(pipe, concepts, config, objective=args.objective, images=args.images, progress=True)
        for concept, name, attr in zip(args.concepts, slugs(args.concepts), attrs):
            attr.save(run.path / f"{name}.attr.safetensors")
            attr.plot(run.path / f"{name}.attr.png")
            summary = attr.summary()
            write_json(run.path / f"{name}.summary.json", summary)
            run.metrics[concept] = {k: summary[k] for k in ("n", "n_positive", "n_negative", "mass_positive",
                                                            "mass_negative", "concentration")}
            run.metrics[concept].update(J=attr.metadata["J"], seconds=attr.metadata["seconds"],
                                        prompt=attr.metadata["prompts"][0])
    for concept in args.concepts:
        c = run.metrics[concept]
        print(f"{concept} ('{c['prompt']}'): {c['n_positive']} positive / {c['n_negative']} negative components; "
              f"top 1 % hold {c['concentration']['top_1%']:.0%} of the positive mass")
    print(f"wrote {args.out}/<concept>.attr.safetensors, .attr.png, .summary.json and run.json")
    return 0


def _method(args: argparse.Namespace):
    """The chosen method, made with the config its flags give; BadInput for a flag of another method."""
    from cadiff.editing.methods import method_config

    refuse_foreign_flags(args, f"--method {args.method}")
    return get_method(args.method)(method_config(args.method, **given_options(args, get_method(args.method)
                                                                              .config_class)))


def run_edit(args: argparse.Namespace, objective: str) -> int:
    """`cadiff erase | amplify`: the chosen method on the checked request, into a run folder with the edit, the
    before/after grid and (on a world's concepts) the accuracies before and after; a calibrated erase adds its
    certificate and exits GOAL_NOT_MET / NOT_PROVEN when it missed or did not prove its goal."""
    from cadiff.io.runs import run_folder
    from cadiff.models import describe_model

    check_out_folder(args)
    method = _method(args)
    inputs = method.inputs(args.concepts, objective, preserve=_preserve(args), images=args.images,
                           keep_world=args.preserve_others)
    pipe = load_from_args(args)
    if method.judged:
        inputs = replace(inputs, judge=judge_from_args(args, pipe), second_judge=judge_from_args(args, pipe, True))
    calibrated = isinstance(method.config, CalibratedConfig)
    request = method.request(pipe, inputs, on_step=_show_point if calibrated else None)
    args.preserve = list(request.concepts.keep)
    settings = {**_inputs(args), "method": args.method, **method.config.to_dict()}
    with run_folder(args.out, objective, settings, args.overwrite) as run:
        run.record["model"] = describe_model(pipe, args.model)
        if calibrated:
            cal = method.config
            print(f"searching a setting for {', '.join(args.concepts)} (goal: target <= {cal.goal_target:.0%}, "
                  f"kept >= {cal.goal_keep:.0%}; at most {cal.budget} settings):", flush=True)
        result = method.run(pipe, request)
        run.record["edit"] = result.record()
        if is_main():  # several processes: the others computed the same edit (images are rendered by all)
            result.write(run.path, export=not args.no_export)
        if calibrated:
            run.metrics = result.certificate.to_dict()
            _grid(run, pipe, result, args, _world_of_concepts(pipe, args.concepts))
        else:
            _pictures_and_metrics(run, pipe, result, args, _world_of_concepts(pipe, args.concepts))
    return _report_calibrated(args, result) if calibrated else _report_edit(args, objective, result, run)


def _world_of_concepts(pipe, concepts: list[str]):
    """The model's world when every concept is one of its own (its judge and images apply), else None."""
    from cadiff.worlds import world_of

    world = world_of(pipe)
    return world if world is not None and all(c in world.concepts() for c in concepts) else None


def _show_point(point) -> None:
    print(f"  {point.order:>2}. {point.label():<42} target {point.target_max:.2f}, worst kept "
          f"{point.kept_min:.0%} ({point.kept_min_concept})", flush=True)


def _report_edit(args: argparse.Namespace, objective: str, result, run) -> int:
    from cadiff.editing.goal import best_round, next_step
    from cadiff.evaluation.accuracy import evaluation_prompts
    from cadiff.worlds import world_of

    zeroed = len(result.mask) if result.mask is not None else None
    verb = {"erase": "erased", "amplify": "amplified"}[objective]
    prompts = result.info.get("prompts")
    shown = ", ".join(f"{c} ('{p}')" if p != c else c for c, p in zip(args.concepts, prompts or args.concepts))
    print(f"{verb} {shown}" + (f": {zeroed} weights zeroed" if zeroed is not None else ""))
    print(f"before/after grid: {args.out}/grid.png")
    if "target_before" in run.metrics:
        m = run.metrics
        targets = "; ".join(f"{t} {m['before'][t]:.2f} -> {m['after'][t]:.2f}" for t in args.concepts)
        print(f"target accuracy {targets}; other concepts "
              f"{m['others_before']:.2f} -> {m['others_after']:.2f} (worst kept {m['kept_min']:.0%}, "
              f"{m['kept_min_concept']}): {args.out}/metrics.json")
        world = world_of(result.pipeline)
        n_images = sum(m["kept_min_concept"] in p.split() for p in evaluation_prompts(args.eval_repeats, world))
        for r in m.get("rounds", []):
            print(f"  after round {r['round']}: target {r['target_after']:.2f}, worst kept {r['kept_min']:.0%} "
                  f"({r['kept_min_concept']}), {r['zeroed']} weights zeroed")
        config = result.config
        hint = next_step(m, objective, config.components, images=n_images, at_steps=config.at_steps) \
            if args.method == "cad" else None
        if hint:
            print(f"hint: {hint}")
        better = best_round(m.get("rounds", [])) if objective == "erase" else None
        if better is not None and better["round"] != len(result.rounds):
            print(f"hint: round {better['round']} kept every other concept >= 95 % with the target at "
                  f"{better['target_after']:.2f}: cadiff apply {args.out}/{better['mask']} --out <folder>")
    if not args.no_export:
        print(f"edited pipeline: {args.out}/pipeline (loads in stock diffusers)")
    return 0


def _report_calibrated(args: argparse.Namespace, result) -> int:
    """The certificate; GOAL_NOT_MET when the confirmation missed the goal, NOT_PROVEN when it met it on point
    estimates only."""
    print(result.certificate.text())
    print(f"certificate: {args.out}/certificate.json, frontier: {args.out}/frontier.png, before/after grid: "
          f"{args.out}/grid.png")
    if not args.no_export:
        print(f"edited pipeline: {args.out}/pipeline (loads in stock diffusers)")
    outcome = result.certificate.outcome
    if outcome == "missed":
        print(f"cadiff: the goal was not met (exit {GOAL_NOT_MET}); the best edit reached is written", flush=True)
        return GOAL_NOT_MET
    if outcome == "met":
        print(f"cadiff: the goal is met on point estimates but not proven (exit {NOT_PROVEN}); the edit is written",
              flush=True)
        return NOT_PROVEN
    return 0


def _grid(run, pipe, result, args, world) -> None:
    """The before/after grid on fixed seeds: prompts naming the targets and other concepts (`world`: the model's
    world when the targets are its concepts)."""
    from cadiff.attribution import concept_prompt
    from cadiff.editing.grids import before_after_grid, grid_prompts

    if world is not None:
        prompts = grid_prompts(args.concepts, world=world)
    else:
        prompts = [concept_prompt(pipe, c) for c in args.concepts + args.preserve for _ in range(4)]
    sampling = {"steps": getattr(args, "steps", None), "guidance": getattr(args, "guidance", None)}
    grid = before_after_grid(pipe, result.pipeline, prompts, title=f"after {run.record['command']}", **sampling)
    grid.save(run.path / "grid.png")


def _pictures_and_metrics(run, pipe, result, args, world) -> None:
    """Before/after grid on fixed seeds; on a model of a world with the world's concepts, the accuracies of every
    concept before and after (and after every round of a multi-round edit)."""
    from tqdm.auto import tqdm

    from cadiff.evaluation.accuracy import measure_edit

    _grid(run, pipe, result, args, world)
    if world is None:
        return
    bars = []

    def bar(label: str, total: int):
        bars.append(tqdm(total=total, desc=f"evaluate {label}", unit="img", leave=False))
        return bars[-1].update

    try:
        run.metrics = measure_edit(pipe, result, repeats=args.eval_repeats, world=world, progress=bar)
    finally:
        for b in bars:
            b.close()


def run_apply(args: argparse.Namespace) -> int:
    from cadiff.editing import Mask, apply_mask, export_pipeline

    check_out_folder(args)
    mask = Mask.load(args.mask)
    if mask.fingerprint is None and not args.force:
        raise BadInput(f"{args.mask} records no model fingerprint, so nothing can check that --model is the model it "
                       "was made for: recompute it with cadiff erase/amplify, or pass --force to apply it anyway")
    pipe = load_from_args(args)
    apply_mask(pipe, mask, fill=args.fill, seed=args.fill_seed)
    export_pipeline(pipe, args.out, info={"command": "apply", "mask_file": str(args.mask), "mask": mask.metadata,
                                          "zeroed": len(mask), "fill": args.fill, "fill_seed": args.fill_seed},
                    overwrite=args.overwrite)
    done = "zeroed" if args.fill == "zero" else "refilled from their rows"
    print(f"{done} {len(mask)} weights; edited pipeline: {args.out}")
    return 0
