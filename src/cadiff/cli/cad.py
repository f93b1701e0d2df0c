"""`cadiff attribute | erase | amplify | apply`: CAD component attribution and edits, each into a run folder.

Example:
    $ cadiff erase circle --preserve square triangle star cross heart --ratio 0.03 --out runs/no-circle
    $ cadiff apply runs/no-circle/mask.safetensors --out no-circle-model
"""

from __future__ import annotations

import argparse
import re

from cadiff.attribution.attribute import PRESERVE_RULES
from cadiff.attribution.objectives import ESTIMATORS, OBJECTIVES
from cadiff.cli.common import add_model_options, add_output_options, load_from_args, positive_int, renamed
from cadiff.files.select import SCOPES
from cadiff.files.io import check_new


def slug(concept: str) -> str:
    """A file-name-safe form of a concept ('a red circle' -> 'a_red_circle')."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", concept).strip("_") or "concept"


def slugs(concepts: list[str]) -> list[str]:
    """One distinct file name per concept ('a red circle', 'a red, circle' -> 'a_red_circle', 'a_red_circle_2')."""
    out: list[str] = []
    for concept in concepts:
        name, k = slug(concept), 2
        while name in out:
            name, k = f"{slug(concept)}_{k}", k + 1
        out.append(name)
    return out


def _check_concepts(args: argparse.Namespace, pipe=None, objective: str = "erase") -> None:
    """Refuse concepts that would make the result meaningless, before any model work: without `pipe` what the
    names alone show (blank, repeated), with it the prompts they become (the same concept twice in other words, a
    target that is also kept or is the base prompt, words the model does not know)."""
    from cadiff.attribution import check_concept_names, check_known_words, concept_prompts

    if pipe is None:
        check_concept_names(args.concepts, args.preserve)
        return
    base = args.base_prompt if objective == "erase" else None
    prompts, keep = concept_prompts(pipe, args.concepts, args.preserve, base_prompt=base)
    check_known_words(pipe, prompts + keep + [args.base_prompt])


def _ratio(text: str) -> float:
    value = float(text)
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {value}")
    return value


def _attribution_options(p: argparse.ArgumentParser, objective: str | None) -> None:
    p.add_argument("concepts", nargs="+", metavar="CONCEPT",
                   help="concept words or prompts (on the embedded model 'circle' means 'a circle', 'red' 'a red shape')")
    keep = p.add_mutually_exclusive_group()
    keep.add_argument("--preserve", nargs="+", default=[], metavar="CONCEPT",
                      help="concepts to keep: scores become target minus the mean of these")
    keep.add_argument("--preserve-others", action="store_true",
                      help="embedded model: keep every concept of the shapes world except the targets (14 for one)")
    p.add_argument("--preserve-rule", choices=PRESERVE_RULES, default="mean",
                   help="how --preserve counts: mean (default), guard (per weight, the largest positive score "
                        "of any concept to keep) or relative (the guard on scores in shares of each concept's J)")
    if objective is None:
        p.add_argument("--objective", choices=list(OBJECTIVES), default="erase")
    if objective in (None, "amplify"):
        p.add_argument("--images", default=None, help="amplify: a folder of real concept images (default: generate them)")
    p.add_argument("--seeds", type=positive_int, default=4, help="trajectories (noise draws) per concept (default 4)")
    p.add_argument("--components", default="ff", help="ff (default, the paper's), attn, linear, all, or a name regex")
    p.add_argument("--estimator", choices=ESTIMATORS, default="trajectory",
                   help="erase objective's estimator: one pass per trajectory (default) or the reference re-sampling "
                        "(slow)")
    renamed(p, "--schedule", "--estimator")
    p.add_argument("--base-prompt", default="", help="erase objective's reference prompt (default: empty)")
    p.add_argument("--steps", type=positive_int, default=None, help="sampling steps (default: the model's)")
    p.add_argument("--at-steps", default="all",
                   help="steps the objective sums over: all (default), early, middle, final, or indices like 0,1,2")
    p.add_argument("--guidance", type=float, default=None, help="guidance scale (default: the model's)")
    p.add_argument("--batch-size", type=positive_int, default=16)


def _edit_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ratio", type=_ratio, default=0.03, help="fraction per row/matrix/all to zero (default 0.03)")
    p.add_argument("--count", type=positive_int, default=None, help="a number of weights instead of --ratio")
    p.add_argument("--scope", choices=SCOPES, default="row",
                   help="row: the paper's per-output-row rule (default); matrix; global")
    p.add_argument("--rounds", type=positive_int, default=1,
                   help="re-score on the edited model and zero another --ratio, this many times in all (default 1); "
                        "every round's mask is kept (mask.roundK.safetensors) and, on the embedded model, measured")
    p.add_argument("--no-export", action="store_true", help="skip writing the edited pipeline folder")
    p.add_argument("--eval-repeats", type=positive_int, default=1,
                   help="embedded model: 36 evaluation images per repeat (each shape/colour 6x, texture 12x; default 1)")


def register(sub) -> None:
    p = sub.add_parser("attribute", help="CAD scores of every component for concepts (safetensors + summary + plot)")
    _attribution_options(p, None)
    add_model_options(p)
    add_output_options(p)
    p.set_defaults(func=run_attribute)

    p = sub.add_parser("erase", help="CAD-Erase: zero the components that carry concepts; export the edited model")
    _attribution_options(p, "erase")
    _edit_options(p)
    p.add_argument("--method", choices=["cad", "esd", "prune"], default="cad",
                   help="cad (default) or a baseline from cadiff.evaluation.baselines")
    add_model_options(p)
    add_output_options(p)
    p.set_defaults(func=lambda a: run_edit(a, "erase"))

    p = sub.add_parser("amplify", help="CAD-Amplify: zero the components that suppress concepts")
    _attribution_options(p, "amplify")
    _edit_options(p)
    add_model_options(p)
    add_output_options(p)
    p.set_defaults(func=lambda a: run_edit(a, "amplify"))

    p = sub.add_parser("apply", help="put a mask file on its model and write the edited pipeline folder")
    p.add_argument("mask", help="a mask file written by cadiff erase/amplify (mask.safetensors)")
    add_model_options(p)
    add_output_options(p)
    p.set_defaults(func=run_apply)


def _attribute_kwargs(args: argparse.Namespace) -> dict:
    return {"seeds": args.seeds, "steps": args.steps, "guidance": args.guidance, "components": args.components,
            "estimator": args.estimator, "base_prompt": args.base_prompt, "at_steps": args.at_steps,
            "preserve_rule": args.preserve_rule, "batch_size": args.batch_size,
            "images": getattr(args, "images", None), "progress": True}


def _resolve_preserve(args: argparse.Namespace, pipe) -> None:
    """--preserve-others: on the embedded model, every shapes-world concept but the targets becomes --preserve."""
    from cadiff.models import is_embedded
    from cadiff.shapes import ATTRIBUTES

    if not args.preserve_others:
        return
    if not is_embedded(pipe):
        raise ValueError("--preserve-others needs the embedded shapes model, whose concepts are a closed list; "
                         "name the concepts to keep with --preserve CONCEPT ...")
    named = {word for concept in args.concepts for word in concept.split()}  # 'a red circle' names red and circle
    args.preserve = [c for values in ATTRIBUTES.values() for c in values if c not in named]


def _settings(args: argparse.Namespace) -> dict:
    skip = {"func", "overwrite", "out"}
    return {k: v for k, v in vars(args).items() if k not in skip}


def run_attribute(args: argparse.Namespace) -> int:
    from cadiff.attribution import attribute
    from cadiff.files.io import write_json
    from cadiff.models import describe_model
    from cadiff.files.runs import run_folder

    check_new(args.out, args.overwrite)
    _check_concepts(args)
    pipe = load_from_args(args)
    _resolve_preserve(args, pipe)
    _check_concepts(args, pipe, args.objective)
    with run_folder(args.out, "attribute", _settings(args), args.overwrite) as run:
        run.record["model"] = describe_model(pipe, args.model)
        attrs = attribute(pipe, args.concepts, preserve=args.preserve, objective=args.objective,
                          **_attribute_kwargs(args))
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


def _baseline(method: str, pipe, concepts: list[str], preserve: list[str], rounds: int = 1, seed: int = 0):
    try:
        from cadiff.evaluation.baselines import erase_with
    except ImportError as exc:
        raise ValueError(f"--method {method} needs cadiff.evaluation.baselines.erase_with, which is not available "
                         f"in this install ({exc}); use --method cad") from exc
    if len(concepts) != 1:
        raise ValueError(f"--method {method} erases one concept per run; give one CONCEPT")
    if rounds != 1:
        raise ValueError(f"--rounds is a CAD option; --method {method} does not take it")
    return erase_with(method, pipe, concepts[0], preserve=preserve or None, seed=seed)


def run_edit(args: argparse.Namespace, objective: str) -> int:
    from tqdm.auto import tqdm

    from cadiff.editing import edited_copy, export_pipeline, plan_edit
    from cadiff.editing.shapes_report import CONCEPTS
    from cadiff.models import describe_model, is_embedded

    check_new(args.out, args.overwrite)
    ratio = None if args.count is not None else args.ratio
    method = getattr(args, "method", "cad")
    _check_concepts(args)
    pipe = load_from_args(args)
    _resolve_preserve(args, pipe)
    _check_concepts(args, pipe, objective)
    from cadiff.files.runs import run_folder

    with run_folder(args.out, objective, {**_settings(args), "ratio": ratio}, args.overwrite) as run:
        run.record["model"] = describe_model(pipe, args.model)
        rounds = {}  # round -> the mask after it
        if method == "cad":
            attrs, mask = plan_edit(pipe, args.concepts, objective, preserve=args.preserve, ratio=ratio,
                                    count=args.count, scope=args.scope, rounds=args.rounds,
                                    on_round=lambda k, m: rounds.__setitem__(k, m), **_attribute_kwargs(args))
            last = "" if args.rounds == 1 else f".round{args.rounds}"  # later rounds score the edited model
            for name, attr in zip(slugs(args.concepts), attrs):
                attr.save(run.path / f"{name}{last}.attr.safetensors")
            mask.save(run.path / "mask.safetensors")
            for k in range(1, args.rounds):  # the earlier rounds' masks, to apply when one of them measured better
                rounds[k].save(run.path / f"mask.round{k}.safetensors")
            edited = edited_copy(pipe, mask, check=False)
            info = {"mask": {k: v for k, v in mask.metadata.items()}, "zeroed": len(mask)}
            run.record["edit"] = {"zeroed": len(mask), "per_parameter": mask.counts(),
                                  "prompts": [a.metadata["prompts"][0] for a in attrs],
                                  "attribution_seconds": [a.metadata["seconds"] for a in attrs]}
        else:
            edited, info = _baseline(method, pipe, args.concepts, args.preserve, args.rounds)
            run.record["edit"] = {"method": method, **info}
        if not args.no_export:
            export_pipeline(edited, run.path / "pipeline", info={"command": objective, **info})
        shapes = is_embedded(pipe) and all(c in CONCEPTS for c in args.concepts)
        _pictures_and_metrics(run, pipe, edited, args, shapes, tqdm, rounds)
    zeroed = run.record["edit"].get("zeroed")
    verb = {"erase": "erased", "amplify": "amplified"}[objective]
    prompts = run.record["edit"].get("prompts")
    shown = ", ".join(f"{c} ('{p}')" if p != c else c for c, p in zip(args.concepts, prompts or args.concepts))
    print(f"{verb} {shown}" + (f": {zeroed} weights zeroed" if zeroed is not None else ""))
    print(f"before/after grid: {args.out}/grid.png")
    if "target_before" in run.metrics:
        m = run.metrics
        targets = "; ".join(f"{t} {m['before'][t]:.2f} -> {m['after'][t]:.2f}" for t in args.concepts)
        print(f"target accuracy {targets}; other concepts "
              f"{m['others_before']:.2f} -> {m['others_after']:.2f} (worst kept {m['kept_min']:.0%}, "
              f"{m['kept_min_concept']}): {args.out}/metrics.json")
        from cadiff.editing.shapes_report import evaluation_prompts

        n_images = sum(m["kept_min_concept"] in p.split() for p in evaluation_prompts(args.eval_repeats))
        for r in m.get("rounds", []):
            print(f"  after round {r['round']}: target {r['target_after']:.2f}, worst kept {r['kept_min']:.0%} "
                  f"({r['kept_min_concept']}), {r['zeroed']} weights zeroed")
        hint = next_step(m, objective, args.components, images=n_images, at_steps=args.at_steps)
        if hint:
            print(f"hint: {hint}")
        better = best_round(m.get("rounds", [])) if objective == "erase" else None
        if better is not None and better["round"] != args.rounds:
            print(f"hint: round {better['round']} kept every other concept >= 95 % with the target at "
                  f"{better['target_after']:.2f}: cadiff apply {args.out}/{better['mask']} --out <folder>")
    if not args.no_export:
        print(f"edited pipeline: {args.out}/pipeline (loads in stock diffusers)")
    return 0


def next_step(metrics: dict, objective: str, components: str, images: int = 0, at_steps: str = "all") -> str | None:
    """What to try when a measured edit missed: other concepts paid (>= 5 % lost), or an erase barely moved.

    `images`: how many evaluation images name the worst-kept concept (a loss of one image says little);
    `at_steps`: the steps the objective summed over (an erase over all of them is told of the early window).

    Example:
        >>> next_step({"target_before": 1.0, "target_after": 0.9, "kept_min": 1.0}, "erase", "ff")[:25]
        'the target barely moved: '
    """
    if metrics["kept_min"] < 0.95:
        if images and 1.0 - metrics["kept_min"] <= 1.0 / images + 1e-9:
            return (f"{metrics['kept_min_concept']} changed in one image of {images}: measure on more images "
                    "(--eval-repeats 4) before changing the edit")
        early = ", or --at-steps early --rounds 2 --ratio 0.02" if objective == "erase" and at_steps == "all" else ""
        guard = (", or --preserve <the concepts to keep> --preserve-rule guard (on the embedded model "
                 "--preserve-others --preserve-rule guard, the most specific erase measured; docs/cad.md)")
        return f"another concept lost accuracy: try a smaller --ratio{early}{guard if objective == 'erase' else ''}"
    if objective == "erase" and metrics["target_after"] > 0.5 * metrics["target_before"]:
        more = "--components linear, " if components == "ff" else ""
        return (f"the target barely moved: try {more}--seeds 16 or --rounds 2 (on the embedded model "
                "`--components linear --seeds 16` is the measured setting; docs/cad.md)")
    return None


def best_round(rounds: list[dict], keep: float = 0.95) -> dict | None:
    """Of an erase's per-round metrics, the round that keeps every other concept >= `keep` with the lowest target
    (fewest weights zeroed on ties); None if no round keeps them.

    Example:
        >>> best_round([{"round": 1, "target_after": 0.2, "kept_min": 1.0, "zeroed": 5},
        ...             {"round": 2, "target_after": 0.0, "kept_min": 0.8, "zeroed": 9}])["round"]
        1
    """
    kept = [r for r in rounds if r["kept_min"] >= keep - 1e-9]
    return min(kept, key=lambda r: (r["target_after"], r["zeroed"])) if kept else None


def _pictures_and_metrics(run, pipe, edited, args, shapes: bool, tqdm, rounds: dict) -> None:
    """Before/after grid on fixed seeds; on the embedded model with shapes-world concepts, evaluator accuracies
    (`rounds`: round -> mask; with more than one, every round is measured too)."""
    from cadiff.attribution import concept_prompt
    from cadiff.editing import ablated
    from cadiff.editing.shapes_report import before_after_grid, concept_accuracies, edit_metrics, grid_prompts

    if shapes:
        prompts = grid_prompts(args.concepts)
    else:
        prompts = [concept_prompt(pipe, c) for c in args.concepts + args.preserve for _ in range(4)]
    before_after_grid(pipe, edited, prompts, title=f"after {run.record['command']}", num_inference_steps=args.steps,
                      guidance_scale=args.guidance).save(run.path / "grid.png")
    if not shapes:
        return
    from cadiff.shapes import load_evaluator

    evaluator = load_evaluator()

    def measure(model, label: str) -> dict[str, float]:
        with tqdm(total=36 * args.eval_repeats, desc=f"evaluate {label}", unit="img", leave=False) as bar:
            return concept_accuracies(model, evaluator, repeats=args.eval_repeats, progress=bar.update)

    before = measure(pipe, "before")
    run.metrics = edit_metrics(before, measure(edited, "after"), args.concepts)
    run.metrics["n_images"] = 36 * args.eval_repeats
    if len(rounds) > 1:
        run.metrics["rounds"] = []
        for k, mask in sorted(rounds.items()):
            last = k == len(rounds)  # the last round is the edited model just measured
            if last:
                after = run.metrics["after"]
            else:
                with ablated(pipe, mask):
                    after = measure(pipe, f"round {k}")
            m = edit_metrics(before, after, args.concepts)
            run.metrics["rounds"].append(
                {"round": k, "zeroed": len(mask), "mask": "mask.safetensors" if last else f"mask.round{k}.safetensors",
                 **{key: m[key] for key in ("target_after", "others_after", "kept_min", "kept_min_concept", "after")}})


def run_apply(args: argparse.Namespace) -> int:
    from cadiff.editing import Mask, apply_mask, export_pipeline

    check_new(args.out, args.overwrite)
    mask = Mask.load(args.mask)
    pipe = load_from_args(args)
    apply_mask(pipe, mask)
    export_pipeline(pipe, args.out, info={"command": "apply", "mask_file": str(args.mask), "mask": mask.metadata,
                                          "zeroed": len(mask)}, overwrite=args.overwrite)
    print(f"zeroed {len(mask)} weights; edited pipeline: {args.out}")
    return 0
