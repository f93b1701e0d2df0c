"""Attribution speed and memory on the embedded model: trajectory estimator vs the reference (restart) vs the
floor, side by side in one run; erase efficacy of both estimators; generation cost of an exported edit.

The floor is the irreducible work of the objective, timed bare: per step one guided forward (sampling) and
one forward + backward of the conditional branch with only the ff weights requiring grad.

    flock /tmp/cadiff-heavy.lock .venv/bin/python bench/cad_speed.py
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from cad_common import CadBenchmark, load, table
from common import require, settings

SHAPES_KEEP = ["square", "triangle", "star", "cross", "heart"]


def floor_time(pipe, seeds: int, steps: int, guidance: float, components: str = "ff") -> float:
    """Seconds for `steps` x (guided forward on 2K + forward/backward on K) with only `components` weights, bare."""
    from cadiff.attribution import select_parameters
    from cadiff.attribution.gradients import only_these_require_grad
    from cadiff.models.trace import conditioning, repeat_rows

    unet = pipe.unet
    cond = repeat_rows(conditioning(pipe, ["a circle"]), seeds)
    uncond = repeat_rows(conditioning(pipe, [""]), seeds)
    both = {k: torch.cat([uncond[k], cond[k]]) for k in cond if isinstance(cond[k], torch.Tensor)}
    size = unet.config.sample_size
    z = torch.randn(seeds, unet.config.in_channels, size, size, generator=torch.Generator().manual_seed(0))
    pipe.scheduler.set_timesteps(steps)
    params = select_parameters(unet, components)
    start = time.perf_counter()
    with only_these_require_grad(unet, params):
        for t in pipe.scheduler.timesteps:
            with torch.no_grad():
                out = unet(torch.cat([z, z]), t, **both, return_dict=False)[0]
            u, c = out.chunk(2)
            loss = (unet(z, t, **cond, return_dict=False)[0] - u).pow(2).sum()
            loss.backward()
            z = z - 0.01 * (c - u)  # stand-in for the scheduler step
    seconds = time.perf_counter() - start
    for p in params.values():
        p.grad = None
    return seconds


def one(method: str, model: str | None, seeds: int, threads: int, steps: int | None = None,
        components: str = "ff") -> dict:
    """Run one method in this process and report seconds and peak RSS (for the subprocess mode)."""
    import cadiff
    from cadiff.models import sampling_defaults

    torch.set_num_threads(threads)
    pipe = cadiff.load_pipeline(model)
    d = sampling_defaults(pipe)
    steps = steps or d["num_inference_steps"]
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if method == "floor":
        seconds = floor_time(pipe, seeds, steps, d["guidance_scale"], components)
    else:
        schedule, _, which = method.partition("+")
        t0 = time.perf_counter()
        cadiff.attribute(pipe, "circle", seeds=seeds, estimator=schedule, components=which or components, steps=steps,
                         progress=False)
        seconds = time.perf_counter() - t0
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"seconds": seconds, "peak_rss_mb": rss1 / 1024, "rss_growth_mb": (rss1 - rss0) / 1024}


class CadSpeed(CadBenchmark):
    name = "cad_speed"
    summary = "attribution speed and memory: trajectory estimator vs the reference (restart) vs the floor; efficacy"

    def options(self, p) -> None:
        super().options(p)
        p.add_argument("--seeds", type=int, default=4)
        p.add_argument("--reps", type=int, default=3)
        p.add_argument("--steps", type=int, default=None, help="sampling steps (default: the model's; the paper: 50)")
        p.add_argument("--components", default="ff",
                       help="attributed weights (the paper's: ff; erasing works with linear)")
        p.add_argument("--one", default=None, help=argparse.SUPPRESS)

    def run(self, args) -> dict:
        if args.quick:
            args.reps = 1

        import cadiff
        from cadiff.attribution import select_parameters
        from cadiff.editing import ablated, export_pipeline
        from cadiff.evaluation.accuracy import concept_accuracies, edit_metrics
        from cadiff.models import sampling_defaults

        pipe, evaluator = load(args)
        d = sampling_defaults(pipe)
        steps = args.steps or d["num_inference_steps"]
        args.section = "cad_speed" if steps == d["num_inference_steps"] else f"cad_speed_{steps}"
        if args.components != "ff":
            args.section += f"_{args.components}"
        timings = {m: [] for m in ("floor", "trajectory", "restart", "restart+all")}
        memory = {}
        for rep in range(args.reps):  # interleaved, each in a fresh process so peak memory is its own
            for method in timings:
                cmd = [sys.executable, __file__, "--one", method, "--seeds", str(args.seeds), "--threads",
                       str(args.threads), "--components", args.components]
                if args.steps:
                    cmd += ["--steps", str(args.steps)]
                if args.model:
                    cmd += ["--model", args.model]
                res = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.splitlines()[-1])
                timings[method].append(res["seconds"])
                memory[method] = res
                print(method, res, flush=True)

        # efficacy of the two estimators' masks: erase circle with the other shapes as preserve set
        eff = {}
        t_pres = {}
        before = concept_accuracies(pipe, evaluator, repeats=2)
        for schedule in ("trajectory", "restart"):
            t0 = time.perf_counter()
            attr = cadiff.attribute(pipe, "circle", preserve=SHAPES_KEEP, seeds=args.seeds, estimator=schedule,
                                    steps=steps, components=args.components, progress=False)
            t_pres[schedule] = time.perf_counter() - t0
            with ablated(pipe, attr.select(ratio=0.03)):
                eff[schedule] = edit_metrics(before, concept_accuracies(pipe, evaluator, repeats=2), ["circle"])
            print(schedule, t_pres[schedule], eff[schedule]["target_after"], eff[schedule]["others_after"], flush=True)

        # generation cost: exported edited model vs the original
        prompts = ["a red striped circle", "a blue solid star", "a green outlined heart", "a yellow solid square"] * 8
        seeds = list(range(len(prompts)))
        gen = {"original": [], "edited": []}
        with tempfile.TemporaryDirectory() as tmp:
            edited = cadiff.erase(pipe, "circle", cadiff.CADConfig(), preserve=SHAPES_KEEP, seeds=args.seeds,
                                  components=args.components, progress=False).pipeline
            export_pipeline(edited, Path(tmp) / "edited")
            loaded = cadiff.load_pipeline(Path(tmp) / "edited")
            cadiff.generate(loaded, prompts[:2], seeds[:2])  # warm-up
            for _ in range(args.reps):
                for name, model in (("original", pipe), ("edited", loaded)):
                    t0 = time.perf_counter()
                    cadiff.generate(model, prompts, seeds)
                    gen[name].append(time.perf_counter() - t0)

        n_selected = sum(p.numel() for p in select_parameters(pipe.unet, args.components).values())
        n_all = sum(p.numel() for p in pipe.unet.parameters())
        return {"timings": timings, "memory": memory, "efficacy": eff, "preserve_seconds": t_pres, "generation": gen,
                "settings": vars(args),
                # what the section shows besides (kept since the runner's base: older JSON lack them)
                "steps": steps, "selected_weights": n_selected, "unet_weights": n_all}

    def report(self, saved: dict, args) -> str:
        require(saved, "steps", "selected_weights", "unet_weights")
        s = settings(saved, args)
        timings, memory, eff, t_pres, gen = (saved[k] for k in ("timings", "memory", "efficacy", "preserve_seconds",
                                                               "generation"))
        steps, n_selected, n_all = saved["steps"], saved["selected_weights"], saved["unet_weights"]
        med = {m: statistics.median(v) for m, v in timings.items()}
        g = {k: statistics.median(v) for k, v in gen.items()}
        spread = {m: f"{min(v):.2f}-{max(v):.2f}" for m, v in timings.items()}
        rows = [[m, med[m], spread[m], med[m] / med["floor"], memory[m]["peak_rss_mb"], memory[m]["rss_growth_mb"]]
                for m in timings]
        return f"""### Speed and memory ('circle', {s.seeds} trajectories, {steps} steps, {s.components} weights, {s.threads} CPU threads)

Median of {s.reps} interleaved runs, each in a fresh process, one benchmark at a time on 2 CPU cores (the spread
column shows the run-to-run noise).

{table(["method", "seconds", "spread", "x floor", "peak RSS MB", "RSS growth MB"], rows)}

- trajectory vs reference (restart, same {s.components} weights): **{med['restart'] / med['trajectory']:.1f}x faster**; vs the
  reference as published (restart with gradients of every UNet weight, "restart+all"):
  **{med['restart+all'] / med['trajectory']:.1f}x** (goal >= 10x). With T steps the restart estimator makes
  T(T+1)/2 guided sampling calls instead of T, so with g = one guided call and b = one forward+backward the
  ratio is bounded by (T(T+1)/2 g + T g + T b) / (T g + T b): about {(325 + 25 + 25 * 2.5) / (25 + 25 * 2.5):.1f}x for
  T = 25 if b = 2.5 g, and about {(1275 + 50 + 50 * 2.5) / (50 + 50 * 2.5):.1f}x for the paper's T = 50.
- trajectory vs floor: **{med['trajectory'] / med['floor']:.2f}x** (goal <= 1.15x; the floor differentiates the same
  {s.components} weights). The trajectory run includes
  sampling through the stock pipeline (scheduler, callbacks, recording) and the fingerprint of the model.
- Gradients exist only for the selected weights: fp32 accumulators hold {n_selected:,} numbers ({n_selected * 4 / 2**20:.1f} MB)
  per concept group, against {n_all:,} ({n_all * 4 / 2**20:.1f} MB) for gradients of the whole UNet.

Erase efficacy of both estimators (circle, preserve = other shapes, ratio 0.03 per row; 72 evaluation images):

{table(["estimator", "attribution seconds (6 concepts)", "circle after", "others after", "worst kept"],
       [[e, t_pres[e], eff[e]["target_after"], eff[e]["others_after"], eff[e]["kept_min"]] for e in eff])}

Generation with the exported edited model (loaded back from disk) vs the original, 32 images, median of
{s.reps}: {g['original']:.2f} s vs {g['edited']:.2f} s, ratio **{g['edited'] / g['original']:.2f}**
(runs: original {', '.join(f'{x:.2f}' for x in gen['original'])}; edited {', '.join(f'{x:.2f}' for x in gen['edited'])}).
"""


if __name__ == "__main__":
    child = CadSpeed().parser().parse_args()
    if child.one:  # one timed method in this fresh process (run() starts these)
        print(json.dumps(one(child.one, child.model, child.seeds, child.threads, child.steps, child.components)))
    else:
        CadSpeed().main()
