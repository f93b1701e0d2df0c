"""Attribution cost on every denoiser family, side by side in one run: each family's small random pipeline (the
tests' tiny pipelines with the denoiser widened, `WIDER`), timed for

- the floor: the stock pipeline call that samples the trajectories (its guidance as the family lays it out: a
  doubled batch, or a second call per step), plus per step one forward + backward of the denoiser on the
  conditional inputs with only the selected weights requiring grad, replayed from the denoiser trace, bare;
- `attribute` (trajectory estimator, erase objective, `linear` weights), and its ratio to the floor. Where the
  pipeline has no unconditional branch (Flux-dev, FLUX.2 [dev]: guidance-distilled), the erase objective's base
  output costs one more no-grad forward per step: the `floor + base` column adds it;
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
FLUX_LIKE = {"num_layers": 2, "num_single_layers": 4, "attention_head_dim": 32, "num_attention_heads": 4,
             "axes_dims_rope": (16, 8, 8)}
WIDER = {
    "sd1": {"block_out_channels": (64, 128), "attention_head_dim": 8, "norm_num_groups": 32, "sample_size": 16},
    "sd3": {"num_layers": 6, "attention_head_dim": 32, "num_attention_heads": 4, "caption_projection_dim": 128,
            "sample_size": 16},
    "flux": FLUX_LIKE,
    "flux-cfg": FLUX_LIKE,
    "pixart": {"num_layers": 6, "attention_head_dim": 32, "num_attention_heads": 4, "cross_attention_dim": 128,
               "sample_size": 16},
    "sana": {"num_layers": 6, "attention_head_dim": 32, "num_attention_heads": 4, "cross_attention_dim": 128,
             "num_cross_attention_heads": 4, "cross_attention_head_dim": 32, "patch_size": 2},
    "qwenimage": {"num_layers": 6, "attention_head_dim": 32, "num_attention_heads": 4, "axes_dims_rope": (8, 12, 12)},
    "chroma": FLUX_LIKE,
    "flux2": {**FLUX_LIKE, "axes_dims_rope": (8, 8, 8, 8)},
    "flux2-klein": {**FLUX_LIKE, "axes_dims_rope": (8, 8, 8, 8)},
    "zimage": {"dim": 128, "n_layers": 6, "n_heads": 4, "n_kv_heads": 4, "axes_dims": [16, 8, 8]},
    "lumina2": {"hidden_size": 128, "num_layers": 6, "num_attention_heads": 4, "num_kv_heads": 2,
                "axes_dim_rope": (16, 8, 8), "sample_size": 16},
    "cogview4": {"num_layers": 6, "attention_head_dim": 32, "num_attention_heads": 4, "sample_size": 16},
    "hunyuanimage": {"num_layers": 2, "num_single_layers": 4, "attention_head_dim": 32, "num_attention_heads": 4,
                     "rope_axes_dim": (16, 16)},
    "hidream": {"num_layers": 2, "num_single_layers": 2, "attention_head_dim": 32, "num_attention_heads": 4,
                "axes_dims_rope": (16, 8, 8), "llama_layers": (0, 1, 0, 1), "max_resolution": (16, 16)},
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
    if hasattr(pipe, "default_sample_size") and kind != "hidream":  # 32 x 32 images (64 tokens), as SD3's
        pipe.default_sample_size = 16
    return pipe


def floor(pipe, prompt: str, images: int, steps: int, guidance: float, components: str) -> dict:
    """The stock call's seconds (its steps recorded by the denoiser trace), then per step one forward + backward
    on the conditional inputs, and (no unconditional branch) one no-grad forward for the base output."""
    import torch

    from cadiff.adapters import adapter_for
    from cadiff.attribution import select_parameters
    from cadiff.attribution.gradients import only_these_require_grad
    from cadiff.models.loading import denoiser
    from cadiff.models.trace import DenoiserTrace, generators, sample

    net = denoiser(pipe)
    adapter = adapter_for(net)
    with DenoiserTrace(pipe, record=images) as trace, torch.no_grad():
        start = time.perf_counter()
        sample(pipe, [prompt] * images, generators(range(images)), steps, guidance)
        sampling = time.perf_counter() - start
    params = select_parameters(net, components)
    backward, base = 0.0, 0.0
    with only_these_require_grad(net, params):
        for step in trace.steps:
            start = time.perf_counter()
            adapter.forward(net, step.sample, step.timestep, step.kwargs).float().pow(2).sum().backward()
            backward += time.perf_counter() - start
            if step.uncond_output is None:
                start = time.perf_counter()
                with torch.no_grad():
                    adapter.forward(net, step.sample, step.timestep, step.kwargs)
                base += time.perf_counter() - start
    for p in params.values():
        p.grad = None
    guided = any(step.uncond_output is not None for step in trace.steps)
    return {"sampling": sampling, "backward": backward, "base": base, "guided": guided,
            "layout": adapter.layout(pipe, guidance), "floor": sampling + backward}


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
        p.add_argument("--generic", nargs="*", default=["sd3"],
                       help="families also measured through the generic path (their adapter set aside)")

    def report(self, results: dict, args) -> str:
        return report(results)

    def run(self, args) -> dict:
        import torch

        from cadiff.adapters import ADAPTERS, PROBED, adapter_for
        from cadiff.adapters.generic import probe
        from cadiff.models.loading import denoiser

        torch.set_num_threads(args.threads)
        results = {"settings": {"images": args.images, "steps": args.steps, "repeats": args.repeats,
                                "threads": args.threads, "components": "linear"}, "families": {}}
        for kind in args.families:
            results["families"][kind] = measure(small_pipeline(kind), args)
            print(kind, results["families"][kind], flush=True)
            save_json(self.path(args), results)
        for kind in args.generic:  # the same model through the generic path: its family adapter set aside
            pipe = small_pipeline(kind)
            net = denoiser(pipe)
            family = adapter_for(net).name
            cls = ADAPTERS.pop(family)
            try:
                start = time.perf_counter()
                PROBED[type(net)] = probe(pipe, net, PROMPT, "")
                probing = time.perf_counter() - start
                row = {**measure(pipe, args), "probe": round(probing, 3), "family_row": kind}
            finally:
                ADAPTERS[family] = cls
                PROBED.pop(type(net), None)
            results["families"][f"{kind} (generic)"] = row
            print(kind, "generic", row, flush=True)
            save_json(self.path(args), results)
        return results


PROMPT, GUIDANCE = "a red circle", 4.0


def measure(pipe, args) -> dict:
    """One family's row: the floor and attribute (interleaved), memory, and generation with an edit."""
    import torch

    import cadiff
    from cadiff.attribution import select_parameters
    from cadiff.editing import edited_copy
    from cadiff.models.loading import denoiser
    from cadiff.models.trace import generators, sample

    net = denoiser(pipe)
    floors, attrs = [], []
    attribution = None
    for _ in range(args.repeats):  # interleaved, so that drift hits both alike
        floors.append(floor(pipe, PROMPT, args.images, args.steps, GUIDANCE, "linear"))
        start = time.perf_counter()
        attribution = cadiff.attribute(pipe, PROMPT, seeds=args.images, steps=args.steps, guidance=GUIDANCE,
                                       components="linear", progress=False)
        attrs.append(time.perf_counter() - start)
    f = {k: statistics.median(x[k] for x in floors) for k in ("sampling", "backward", "base", "floor")}
    seconds = statistics.median(attrs)
    edited = edited_copy(pipe, attribution.select(ratio=0.03))
    gen = {"original": [], "edited": []}
    for _ in range(args.repeats):
        for name, model in (("original", pipe), ("edited", edited)):
            start = time.perf_counter()
            with torch.no_grad():
                sample(model, [PROMPT] * args.images, generators(range(1, args.images + 1)), args.steps, GUIDANCE)
            gen[name].append(time.perf_counter() - start)
    selected = select_parameters(net, "linear")
    row = {"denoiser": type(net).__name__, "parameters": sum(p.numel() for p in net.parameters()),
           "guidance": describe_layout(floors[0]["layout"]), **{k: round(v, 3) for k, v in f.items()},
           "attribute": round(seconds, 3), "ratio": round(seconds / f["floor"], 3),
           "ratio_with_base": round(seconds / (f["floor"] + f["base"]), 3),
           "accumulator_bytes": sum(s.numel() * s.element_size() for s in attribution.scores.values()),
           "selected_bytes_fp32": sum(p.numel() * 4 for p in selected.values()),
           "denoiser_bytes_fp32": sum(p.numel() * 4 for p in net.parameters()),
           "generate_original": round(statistics.median(gen["original"]), 3),
           "generate_edited": round(statistics.median(gen["edited"]), 3)}
    row["generate_ratio"] = round(row["generate_edited"] / row["generate_original"], 3)
    return row


def describe_layout(layout) -> str:
    """'doubled batch, uncond first', 'two calls, cond first' or 'none (one call)'."""
    if not layout.guided:
        return "none (one call)"
    return f"{'doubled batch' if layout.split == 'batch' else 'two calls'}, {layout.order[0]} first"


def report(results: dict) -> str:
    s = results["settings"]
    rows = []
    for kind, r in results["families"].items():
        rows.append([kind, r["denoiser"], f"{r['parameters'] / 1e6:.2f} M", r["guidance"],
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
            "inputs, bare; *guidance*: how a step calls the denoiser; *floor + base*: with the extra no-grad forward per "
            "step that a pipeline without an unconditional branch (Flux-dev, FLUX.2 [dev]) needs for the erase "
            "objective's base output; *accumulators*: the fp32 "
            "scores `attribute` keeps against the selected weights in fp32 and the whole denoiser in fp32; "
            "*edited generation*: an edit zeroing 3 % per row, against the original, the same call; a "
            "*(generic)* row is the same model attributed through the generic path (its family adapter set aside; "
            "the probe's own two short runs are not counted). JSON: `bench/results/family_speed.json`.")
    return head + "\n\n" + table(["family", "denoiser", "parameters", "guidance", "floor s", "floor + base s",
                                  "attribute s", "attribute / floor", "attribute / (floor + base)",
                                  "accumulators / selected / denoiser MiB", "edited generation"], rows)


if __name__ == "__main__":
    FamilySpeed().main()
