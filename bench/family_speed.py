"""Attribution cost on every denoiser family, side by side in one run: each family's small random pipeline (the
tests' tiny pipelines with the denoiser widened, `WIDER`), timed for

- the floor: the stock pipeline call that samples the trajectories (one guided forward per step, as the pipeline
  batches it), plus per step one forward + backward of the denoiser on the conditional inputs with only the
  selected weights requiring grad, replayed from the recorded calls, bare;
- `attribute` (trajectory estimator, erase objective, `linear` weights), and its ratio to the floor. Where the
  pipeline has no unconditional half (Flux-dev, guidance-distilled), the erase objective's base output costs one
  more no-grad forward per step: the `floor + base` column adds it;
- the fp32 accumulators `attribute` keeps (bytes) against the selected weights' and the whole denoiser's;
- generation with an exported edit (3 % per row zeroed) against the original, the same call.

Random weights: the times are the work's, not a real model's quality. Writes bench/results/family_speed.json and
the section `family_speed` of docs/cad.md.

    flock /tmp/cadiff-heavy.lock .venv/bin/python bench/family_speed.py
"""

from __future__ import annotations

import statistics
import sys
import time

from common import ROOT, Benchmark, save_json, table

sys.path.insert(0, str(ROOT / "tests"))  # the tiny pipelines built from configs

# The denoiser of each tiny pipeline rebuilt wider and deeper (the text encoders, VAE and scheduler stay tiny).
WIDER = {
    "sd1": {"block_out_channels": (64, 128), "attention_head_dim": 8, "norm_num_groups": 32, "sample_size": 16},
    "sd3": {"num_layers": 6, "attention_head_dim": 32, "num_attention_heads": 4, "caption_projection_dim": 128,
            "sample_size": 16},
    "flux": {"num_layers": 2, "num_single_layers": 4, "attention_head_dim": 32, "num_attention_heads": 4,
             "axes_dims_rope": (16, 8, 8)},
    "pixart": {"num_layers": 6, "attention_head_dim": 32, "num_attention_heads": 4, "cross_attention_dim": 128,
               "sample_size": 16},
    "sana": {"num_layers": 6, "attention_head_dim": 32, "num_attention_heads": 4, "cross_attention_dim": 128,
             "num_cross_attention_heads": 4, "cross_attention_head_dim": 32, "patch_size": 2},
}


def small_pipeline(kind: str):
    import torch

    from cadiff.editing.copies import with_denoiser
    from cadiff.models.loading import denoiser
    from tiny_pipelines import tiny_sd

    pipe = tiny_sd(kind)
    net = denoiser(pipe)
    torch.manual_seed(0)
    wide = type(net).from_config({**net.config, **WIDER[kind]})
    pipe = with_denoiser(pipe, wide.eval())
    if kind in ("sd3", "flux"):  # these pipelines read the latent size off the denoiser when built
        pipe.default_sample_size = 16
    return pipe


def recorded_calls(pipe, prompt: str, images: int, steps: int, guidance: float) -> tuple[list, float]:
    """The denoiser's calls (args, kwargs, cloned) during one stock pipeline call, and that call's seconds."""
    import torch

    from cadiff.models.loading import denoiser

    calls = []

    def hook(module, args, kwargs):
        calls.append(([a.detach().clone() if torch.is_tensor(a) else a for a in args],
                      {k: v.detach().clone() if torch.is_tensor(v) else v for k, v in kwargs.items()}))

    handle = denoiser(pipe).register_forward_pre_hook(hook, with_kwargs=True)
    try:
        start = time.perf_counter()
        with torch.no_grad():
            pipe(prompt, num_inference_steps=steps, guidance_scale=guidance, num_images_per_prompt=images,
                 generator=torch.Generator().manual_seed(0), output_type="latent")
        seconds = time.perf_counter() - start
    finally:
        handle.remove()
    return calls, seconds


def conditional_half(args: list, kwargs: dict, images: int) -> tuple[list, dict, bool]:
    """The call's conditional rows (the second half of a guided batch, diffusers' [uncond, cond] layout)."""
    import torch

    first = next(v for v in [*args, *kwargs.values()] if torch.is_tensor(v))
    guided = first.shape[0] == 2 * images
    pick = (lambda v: v[images:] if torch.is_tensor(v) and v.ndim and v.shape[0] == 2 * images else v) if guided \
        else (lambda v: v)
    return [pick(a) for a in args], {k: pick(v) for k, v in kwargs.items()}, guided


def floor(pipe, prompt: str, images: int, steps: int, guidance: float, components: str) -> dict:
    import torch

    from cadiff.attribution import select_parameters
    from cadiff.attribution.gradients import only_these_require_grad
    from cadiff.models.trace import output_tensor
    from cadiff.models.loading import denoiser

    net = denoiser(pipe)
    calls, sampling = recorded_calls(pipe, prompt, images, steps, guidance)
    params = select_parameters(net, components)
    backward, base, guided = 0.0, 0.0, True
    with only_these_require_grad(net, params):
        for args, kwargs in calls:
            a, k, guided = conditional_half(args, kwargs, images)
            start = time.perf_counter()
            output_tensor(net(*a, **{**k, "return_dict": False})).float().pow(2).sum().backward()
            backward += time.perf_counter() - start
            if not guided:
                start = time.perf_counter()
                with torch.no_grad():
                    net(*a, **{**k, "return_dict": False})
                base += time.perf_counter() - start
    for p in params.values():
        p.grad = None
    return {"sampling": sampling, "backward": backward, "base": base, "guided": guided,
            "floor": sampling + backward}


class FamilySpeed(Benchmark):
    name = "family_speed"
    summary = "attribution cost against its floor on every denoiser family (small random pipelines), memory, generation"
    doc, title = ROOT / "docs" / "cad.md", "# CAD"

    def options(self, p) -> None:
        super().options(p)
        p.add_argument("--families", nargs="*", default=list(WIDER))
        p.add_argument("--images", type=int, default=4, help="trajectories (seeds)")
        p.add_argument("--steps", type=int, default=10)
        p.add_argument("--repeats", type=int, default=3, help="median of this many timings")

    def report(self, results: dict, args) -> str:
        return report(results)

    def run(self, args) -> dict:
        import torch

        import cadiff
        from cadiff.attribution import select_parameters
        from cadiff.editing import edited_copy
        from cadiff.models.loading import denoiser

        torch.set_num_threads(args.threads)
        results = {"settings": {"images": args.images, "steps": args.steps, "repeats": args.repeats,
                                "threads": args.threads, "components": "linear"}, "families": {}}
        prompt, guidance = "a red circle", 4.0
        for kind in args.families:
            pipe = small_pipeline(kind)
            net = denoiser(pipe)
            floors, attrs = [], []
            attribution = None
            for _ in range(args.repeats):  # interleaved, so that drift hits both alike
                floors.append(floor(pipe, prompt, args.images, args.steps, guidance, "linear"))
                start = time.perf_counter()
                attribution = cadiff.attribute(pipe, prompt, seeds=args.images, steps=args.steps, guidance=guidance,
                                               components="linear", progress=False)
                attrs.append(time.perf_counter() - start)
            f = {k: statistics.median(x[k] for x in floors) for k in ("sampling", "backward", "base", "floor")}
            seconds = statistics.median(attrs)
            mask = attribution.select(ratio=0.03)
            edited = edited_copy(pipe, mask)
            gen = {"original": [], "edited": []}
            for _ in range(args.repeats):
                for name, model in (("original", pipe), ("edited", edited)):
                    start = time.perf_counter()
                    with torch.no_grad():
                        model(prompt, num_inference_steps=args.steps, guidance_scale=guidance,
                              num_images_per_prompt=args.images, generator=torch.Generator().manual_seed(1))
                    gen[name].append(time.perf_counter() - start)
            selected = select_parameters(net, "linear")
            row = {"denoiser": type(net).__name__, "parameters": sum(p.numel() for p in net.parameters()),
                   "guided_batch": floors[0]["guided"], **{k: round(v, 3) for k, v in f.items()},
                   "attribute": round(seconds, 3), "ratio": round(seconds / f["floor"], 3),
                   "ratio_with_base": round(seconds / (f["floor"] + f["base"]), 3),
                   "accumulator_bytes": sum(s.numel() * s.element_size() for s in attribution.scores.values()),
                   "selected_bytes_fp32": sum(p.numel() * 4 for p in selected.values()),
                   "denoiser_bytes_fp32": sum(p.numel() * 4 for p in net.parameters()),
                   "generate_original": round(statistics.median(gen["original"]), 3),
                   "generate_edited": round(statistics.median(gen["edited"]), 3)}
            row["generate_ratio"] = round(row["generate_edited"] / row["generate_original"], 3)
            results["families"][kind] = row
            print(kind, row, flush=True)
            save_json(self.path(args), results)
        return results


def report(results: dict) -> str:
    s = results["settings"]
    rows = []
    for kind, r in results["families"].items():
        rows.append([kind, r["denoiser"], f"{r['parameters'] / 1e6:.2f} M", "yes" if r["guided_batch"] else "no",
                     f"{r['floor']:.2f}", f"{r['floor'] + r['base']:.2f}" if r["base"] else "–",
                     f"{r['attribute']:.2f}", f"{r['ratio']:.2f}x",
                     f"{r['ratio_with_base']:.2f}x" if r["base"] else "–",
                     f"{r['accumulator_bytes'] / 2**20:.1f} / {r['selected_bytes_fp32'] / 2**20:.1f} / "
                     f"{r['denoiser_bytes_fp32'] / 2**20:.1f}",
                     f"{r['generate_ratio']:.2f}x"])
    head = (f"Each family's small random pipeline (the tests' tiny pipelines with the denoiser widened; "
            f"`bench/family_speed.py`), {s['images']} trajectories x {s['steps']} steps, guidance 4, the `linear` "
            f"weights, {s['threads']} CPU threads, median of {s['repeats']} interleaved timings. *floor*: the stock "
            "pipeline call that samples the trajectories plus one forward + backward per step on the conditional "
            "inputs, bare; *floor + base*: with the extra no-grad forward per step that a pipeline without an "
            "unconditional half (Flux-dev) needs for the erase objective's base output; *accumulators*: the fp32 "
            "scores `attribute` keeps against the selected weights in fp32 and the whole denoiser in fp32; "
            "*edited generation*: an edit zeroing 3 % per row, against the original, the same call. JSON: "
            "`bench/results/family_speed.json`.")
    return head + "\n\n" + table(["family", "denoiser", "parameters", "guided batch", "floor s", "floor + base s",
                                  "attribute s", "attribute / floor", "attribute / (floor + base)",
                                  "accumulators / selected / denoiser MiB", "edited generation"], rows)


if __name__ == "__main__":
    FamilySpeed().main()
