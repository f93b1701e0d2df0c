"""`cadiff sae hookpoints | collect | train | inspect | steer`: concepts over time with sparse autoencoders."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tqdm.auto import tqdm

from cadiff.cli.common import (add_config_flags, add_model_options, add_output_options, add_sampling_options,
                               given_options, load_from_args, positive_int)
from cadiff.errors import BadInput, MissingFile


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _ints(text: str) -> list[int]:
    try:
        return [int(t) for t in _csv(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got '{text}'") from None


def register(sub, argv=()) -> None:
    p = sub.add_parser("sae", help="sparse autoencoders on the denoiser: collect, train, inspect, steer")
    s = p.add_subparsers(dest="sae_command", required=True, metavar="COMMAND")

    h = s.add_parser("hookpoints", help="list the model's hookpoints (cross-attention transformer modules)")
    add_model_options(h)
    h.set_defaults(func=hookpoints_cmd)

    c = s.add_parser("collect", help="generate images and store hookpoint activations per step (resumable)")
    c.add_argument("prompts", nargs="*", help="prompts (default with the shapes model: --random-prompts)")
    c.add_argument("-n", "--num-images", type=positive_int, default=1, help="images per prompt")
    c.add_argument("--random-prompts", type=positive_int, default=None,
                   help="N shapes-world captions with attributes left open at random (the training mix)")
    c.add_argument("--seed", type=int, default=0, help="first seed; image i uses seed+i")
    from cadiff.sae.collect import CaptureConfig

    add_config_flags(c, {"capture": CaptureConfig})
    add_model_options(c)
    c.add_argument("--out", required=True, help="activation folder; an interrupted capture there is resumed")
    c.add_argument("--overwrite", action="store_true", help="discard an existing folder and start afresh")
    c.set_defaults(func=collect_cmd)

    t = s.add_parser("train", help="train a TopK SAE on one (hookpoint, branch, steps) of an activation folder")
    t.add_argument("activations", help="folder written by `cadiff sae collect`")
    t.add_argument("--hookpoint", default=None, help="default: the folder's only hookpoint")
    t.add_argument("--branch", default="cond", choices=["cond", "uncond"])
    t.add_argument("--at-steps", default=None, help="stored sampling steps to train on: a window or indices "
                                                     "(default: all stored)")
    from cadiff.sae import SAETrainConfig

    add_config_flags(t, {"train": SAETrainConfig})
    add_output_options(t)
    t.set_defaults(func=train_cmd)

    i = s.add_parser("inspect", help="concept dictionary, concept cards, cohesion/separability, early composition")
    i.add_argument("activations", help="folder written by `cadiff sae collect` (shapes world, for labels)")
    i.add_argument("--sae", required=True, help="SAE folder written by `cadiff sae train`")
    i.add_argument("--at-steps", type=int, default=None, help="the sampling step to read (default: the SAE's first)")
    i.add_argument("--cards", type=positive_int, default=16, help="latents on the concept-card sheet")
    add_output_options(i)
    i.set_defaults(func=inspect_cmd)

    st = s.add_parser("steer", help="generate with concept vectors added at the SAE's hookpoint over a window")
    st.add_argument("prompts", nargs="+")
    st.add_argument("--sae", required=True, help="SAE folder written by `cadiff sae train`")
    group = st.add_mutually_exclusive_group(required=True)
    group.add_argument("--latents", type=_ints, help="latent indices, e.g. 12,40")
    group.add_argument("--concept", help="a concept word (red, star, striped); needs --concepts")
    st.add_argument("--concepts", default=None, help="concepts.json written by `cadiff sae inspect`")
    from cadiff.sae.steering import SteerConfig

    add_config_flags(st, {"steer": SteerConfig})
    st.add_argument("--quadrant", default="top-left", help="target quadrant for --mode spatial")
    st.add_argument("-n", "--num-images", type=positive_int, default=8)
    st.add_argument("--seed", type=int, default=0)
    add_model_options(st)
    add_sampling_options(st)
    add_output_options(st)
    st.set_defaults(func=steer_cmd)


def hookpoints_cmd(args: argparse.Namespace) -> int:
    from cadiff.sae import hookpoints

    for name in hookpoints(load_from_args(args)):
        print(name)
    return 0


def collect_cmd(args: argparse.Namespace) -> int:
    from cadiff.io.files import write_json
    from cadiff.worlds import get_world, world_of
    from cadiff.io.runs import versions
    from cadiff.io.files import check_new
    from cadiff.distributed import is_main
    from cadiff.sae import collect_activations
    from cadiff.sae.collect import CaptureConfig

    config = CaptureConfig(**given_options(args, CaptureConfig))
    if is_main() and not Path(args.out).exists():
        check_new(args.out)  # before loading the model or opening the bar (several processes: rank 0's folder)
    pipe = load_from_args(args)
    world = world_of(pipe) or get_world("shapes")  # --random-prompts: the shapes world's captions by default
    if args.random_prompts:
        prompts = world.training_prompts(args.random_prompts, args.seed)
    elif args.prompts:
        prompts = [p for p in args.prompts for _ in range(args.num_images)]
    elif world_of(pipe) is not None:
        prompts = world.training_prompts(256, args.seed)
    else:
        raise BadInput("give prompts (or --random-prompts N with the shapes model)")
    seeds = [args.seed + i for i in range(len(prompts))]
    resuming = Path(args.out, "meta.json").is_file() and not args.overwrite
    if resuming:
        print(f"resuming the capture in {args.out}")
    with tqdm(total=len(prompts), desc="collect", unit="img", disable=not is_main()) as bar:
        store = collect_activations(pipe, prompts, seeds, args.out, config, overwrite=args.overwrite,
                                    model_source=args.model, progress=bar.update)
    if not is_main():  # several processes: rank 0 wrote the store and says what it holds
        return 0
    inputs = {k: v for k, v in vars(args).items() if k != "func" and k not in CaptureConfig.names()}
    write_json(Path(args.out) / "run.json", {"command": "sae collect", "settings": {**inputs, **config.to_dict()},
                                             "versions": versions()})
    print(f"wrote {store.num_images()} images x {len(store.steps)} steps of {', '.join(store.hookpoints)} "
          f"into {args.out}")
    return 0


def train_cmd(args: argparse.Namespace) -> int:
    from cadiff.io.files import check_new
    from cadiff.io.runs import run_folder
    from cadiff.sae import ActivationStore, SAETrainConfig, resolve_steps, train_sae
    from cadiff.sae.model import CFG, WEIGHTS
    from cadiff.sae.train import training_tokens

    check_new(args.out, args.overwrite)
    store = ActivationStore(args.activations)
    hookpoint = args.hookpoint or (store.hookpoints[0] if len(store.hookpoints) == 1 else None)
    if hookpoint is None:
        raise BadInput(f"{args.activations} holds several hookpoints; pick one with --hookpoint "
                       f"({', '.join(store.hookpoints)})")
    steps = store.steps if args.at_steps is None else resolve_steps(args.at_steps, store.meta["num_inference_steps"])
    cfg = SAETrainConfig(**given_options(args, SAETrainConfig))
    checkpoint = Path(str(args.out).rstrip("/") + ".checkpoint")
    if (checkpoint / "state.json").is_file():
        print(f"resuming from {checkpoint}")
    total = training_tokens(store, hookpoint, args.branch, steps, cfg)  # checks the split before any training
    with tqdm(total=total, desc="train", unit="tok") as bar:
        sae, metrics = train_sae(store, hookpoint, args.branch, at_steps=steps, config=cfg, checkpoint=checkpoint,
                                 progress=lambda info: (bar.update(info["tokens"] - bar.n),
                                                        bar.set_postfix(mse=f"{info['mse']:.3g}", dead=info["dead"])))
        bar.total = bar.n  # the last batch may pass max_tokens: the bar ends full, at what was trained
        bar.refresh()
    settings = {"activations": args.activations, "hookpoint": hookpoint, "branch": args.branch, "steps": steps,
                **cfg.to_dict()}
    with run_folder(args.out, "sae train", settings, args.overwrite) as run:
        tmp = sae.save(run.path / "_sae")
        for name in (CFG, WEIGHTS):
            (tmp / name).rename(run.path / name)
        tmp.rmdir()
        run.metrics = metrics
    print(f"explained variance {metrics['explained_variance']:.3f}, L0 {metrics['l0']:.1f}, "
          f"dead {metrics['dead_fraction']:.1%}; wrote {args.out}/cfg.json and sae_weights.safetensors")
    return 0


def inspect_cmd(args: argparse.Namespace) -> int:
    from cadiff.io.files import check_new, write_json
    from cadiff.io.runs import run_folder
    from cadiff.sae import ActivationStore, TopKSAE
    from cadiff.sae.composition import object_map_iou, probe_scores
    from cadiff.sae.concepts import (cohesion_separability, concept_cards, concept_dictionary, latent_codes,
                                     pick_latents)

    check_new(args.out, args.overwrite)
    store = ActivationStore(args.activations)
    sae = TopKSAE.load(args.sae)
    step = args.at_steps if args.at_steps is not None else (sae.metadata.get("steps") or store.steps)[0]
    codes = latent_codes(store, sae, step)
    if codes.masks is None:
        raise BadInput(f"{args.activations} has no object masks: inspect needs activations of the shapes world")
    entries = concept_dictionary(codes)
    with run_folder(args.out, "sae inspect", {"activations": args.activations, "sae": args.sae, "step": step},
                    args.overwrite) as run:
        write_json(run.path / "concepts.json", entries)
        concept_cards(codes, entries, pick_latents(entries, args.cards)).save(run.path / "cards.png")
        kinds = [e["kind"] for e in entries]
        run.metrics = {"step": step, "latents": len(entries), "object_latents": kinds.count("object"),
                       "background_latents": kinds.count("background"),
                       "cohesion_separability": cohesion_separability(codes, entries),
                       "object_map": object_map_iou(codes),
                       "probes": probe_scores(store, sae.hookpoint, step, sae.metadata.get("branch", "cond"))}
    om = run.metrics["object_map"]
    print(f"{kinds.count('object')} object / {kinds.count('background')} background latents of {len(entries)}; "
          f"object-map IoU {om['iou']:.2f} (blob baseline {om['baseline_mean_mask']:.2f}); "
          f"wrote {args.out}/concepts.json and cards.png")
    return 0


def read_concepts(path: str) -> list[dict]:
    """The latent entries of a concepts.json written by `cadiff sae inspect`, read as UTF-8; a one-line ValueError
    naming the file for a missing one, one that is not UTF-8 or not JSON, or JSON of another shape."""
    from cadiff.evaluation.prompts import read_text_file

    what = f"--concepts {path}"
    if not Path(path).is_file():
        raise MissingFile(f"{what}: no such file; give the concepts.json that `cadiff sae inspect` wrote")
    try:
        entries = json.loads(read_text_file(path, "--concepts"))
    except json.JSONDecodeError as exc:
        raise BadInput(f"{what}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); give the "
                       "concepts.json that `cadiff sae inspect` wrote") from None
    keys = {"latent", "fires", "labels", "purity"}  # what latents_for reads of each entry
    if not isinstance(entries, list) or not all(isinstance(e, dict) and keys <= set(e) for e in entries):
        raise BadInput(f"{what}: not a concepts.json of `cadiff sae inspect` (a list of latents with their "
                       "purity); give the one it wrote")
    return entries


def steer_cmd(args: argparse.Namespace) -> int:
    from cadiff.io.files import check_new
    from cadiff.models import describe_model, generate
    from cadiff.models.loading import resolve_sampling
    from cadiff.worlds import world_of
    from cadiff.report import image_grid, stack_grids
    from cadiff.io.runs import run_folder
    from cadiff.sae.steering import SteerConfig
    from cadiff.sae import TopKSAE, steer
    from cadiff.sae.concepts import latents_for
    from cadiff.sae.steering_eval import change, spatial_success, style_success

    config = SteerConfig(**given_options(args, SteerConfig))  # checked before any model work
    check_new(args.out, args.overwrite)
    if args.concept is not None:  # the concepts file is checked before any model work
        if args.concepts is None:
            raise BadInput("--concept needs --concepts concepts.json (from `cadiff sae inspect`)")
        latents = latents_for(read_concepts(args.concepts), args.concept)
    else:
        latents = args.latents
    pipe = load_from_args(args)
    sae = TopKSAE.load(args.sae)
    world = world_of(pipe)
    evaluator = world.judge() if world is not None and config.mode == "global" and args.concept is not None else None
    n_steps, _ = resolve_sampling(pipe, args.steps)
    seeds = [args.seed + i for i in range(args.num_images)]
    prompts = [p for p in args.prompts for _ in seeds]
    all_seeds = seeds * len(args.prompts)
    kw = {"steps": n_steps, "guidance": args.guidance, "batch_size": args.batch_size}
    before = generate(pipe, prompts, all_seeds, **kw)
    with steer(pipe, sae, latents, config, quadrant=args.quadrant if config.mode == "spatial" else None,
               steps=n_steps):
        after = generate(pipe, prompts, all_seeds, **kw)
    settings = {"prompts": args.prompts, "seeds": seeds, "sae": args.sae, "latents": latents, **config.to_dict(),
                "quadrant": args.quadrant, **kw, "truncate": args.truncate}
    with run_folder(args.out, "sae steer", settings, args.overwrite) as run:
        run.record["model"] = describe_model(pipe, args.model)
        grids = [image_grid(before, cols=args.num_images, row_labels=args.prompts),
                 image_grid(after, cols=args.num_images, row_labels=args.prompts)]
        stack_grids(grids, ["unsteered", f"steered: latents {latents}, {config.mode}, beta {config.beta}, "
                                         f"steps {config.at_steps}"]).save(run.path / "grid.png")
        run.metrics = {"change": change(before, after)}
        if world is not None and config.mode == "spatial":
            run.metrics["spatial_success"] = spatial_success(after, args.quadrant, world)
            run.metrics["spatial_success_unsteered"] = spatial_success(before, args.quadrant, world)
        if evaluator is not None:
            run.metrics["style_success"] = style_success(after, args.concept, evaluator, world)
            run.metrics["style_success_unsteered"] = style_success(before, args.concept, evaluator, world)
    print(" ".join(f"{k} {v:.3f}" for k, v in run.metrics.items()) + f"; wrote {args.out}/grid.png")
    return 0
