"""`cadiff generate`: images for prompts on fixed seeds, as a grid plus run.json."""

from __future__ import annotations

import argparse

from tqdm.auto import tqdm

from cadiff.cli.common import (add_model_options, add_output_options, add_sampling_options, check_out_folder,
                               load_from_args,
                               positive_int, sampling_kwargs)


def register(sub, argv=()) -> None:
    p = sub.add_parser("generate", help="generate images on fixed seeds into a run folder")
    p.add_argument("prompts", nargs="+", help="one or more prompts")
    p.add_argument("-n", "--num-images", type=positive_int, default=8, help="images per prompt")
    p.add_argument("--seed", type=int, default=0, help="first seed; image i of each prompt uses seed+i")
    add_model_options(p)
    add_sampling_options(p)
    add_output_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cadiff.distributed import is_main
    from cadiff.evaluation.runner import check_seed
    from cadiff.models import describe_model, generate
    from cadiff.models.loading import resolve_sampling
    from cadiff.models.vocabulary import check_known_words
    from cadiff.report import image_grid
    from cadiff.io.runs import run_folder

    seeds = [args.seed + i for i in range(args.num_images)]
    for seed in (seeds[0], seeds[-1]):
        check_seed(seed, f"--seed {args.seed} with -n {args.num_images}")
    check_out_folder(args)
    pipe = load_from_args(args)
    check_known_words(pipe, args.prompts)  # before the bar and the run folder: a bad prompt is one error line
    prompts = [p for p in args.prompts for _ in seeds]
    all_seeds = seeds * len(args.prompts)
    kwargs = sampling_kwargs(args)
    steps, guidance = resolve_sampling(pipe, kwargs["steps"], kwargs["guidance"])
    resolved = {"steps": steps, "guidance": guidance}
    settings = {"prompts": args.prompts, "seed": args.seed, "num_images": args.num_images, "seeds": seeds, **resolved,
                "batch_size": args.batch_size, "scheduler": type(pipe.scheduler).__name__,
                **{k: getattr(args, k) for k in ("model", "config", "dtype", "device", "truncate")}}
    with run_folder(args.out, "generate", settings, args.overwrite) as run_:
        run_.record["model"] = describe_model(pipe, args.model)
        with tqdm(total=len(prompts), desc="generate", unit="img", disable=not is_main()) as bar:
            images = generate(pipe, prompts, all_seeds, progress=bar.update, **kwargs)
        image_grid(images, cols=args.num_images, row_labels=args.prompts).save(run_.path / "grid.png")
        (run_.path / "images").mkdir()
        for i, (prompt, seed) in enumerate(zip(prompts, all_seeds)):
            from PIL import Image

            Image.fromarray(images[i]).save(run_.path / "images" / f"{i:04d}_seed{seed}.png")
    if is_main():  # several processes: each rendered every N-th image, rank 0 wrote them all
        print(f"wrote {args.out}/grid.png and {args.out}/run.json")
    return 0
