"""Shared plumbing of the SAE benchmarks: their base class (sections of docs/sae.md), the shared activation folder,
the shared SAEs, and their table format.

Run heavy benchmarks one at a time: `flock /tmp/cadiff-heavy.lock .venv/bin/python bench/run.py run sae_capture`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import common
from common import RESULTS, ROOT, Benchmark, tagged

DOC = ROOT / "docs" / "sae.md"
CACHE = Path("/tmp/cadiff-sae-bench")
# The shared data set, every step, both branches. U-Net: the mid block (4x4x128) and a finer up block (8x8x64);
# the shapes MMDiT (6 joint blocks, 8x8 image tokens of width 128): its middle block and its last (the image stream).
HOOKS_OF = {"UNet2DConditionModel": ["mid_block.attentions.0", "up_blocks.1.attentions.0"],
            "SD3Transformer2DModel": ["transformer_blocks.3", "transformer_blocks.5"]}
SHORT = {"mid_block.attentions.0": "mid", "up_blocks.1.attentions.0": "up1", "transformer_blocks.3": "b3",
         "transformer_blocks.5": "b5"}


class SaeBenchmark(Benchmark):
    """An SAE benchmark: its section (the name less `sae_`: capture, train, ...) goes to docs/sae.md, its JSON is
    bench/results/sae_<section>.json."""

    doc = DOC
    title = "# Concepts over time with sparse autoencoders"

    def options(self, p) -> None:
        p.add_argument("--model", default=None, help="pipeline folder (default: the embedded shapes model)")
        p.add_argument("--evaluator", default=None, help="evaluator folder (default: the shipped one)")
        p.add_argument("--quick", action="store_true", help="tiny sizes, for checking the script itself")
        p.add_argument("--doc", default=None, help="markdown file written (default: the one holding the section, "
                                                   "else docs/sae.md)")
        p.add_argument("--img", default=str(self.img))
        p.add_argument("--cache", default=str(CACHE), help="where the shared activation folders live")
        p.add_argument("--images", type=int, default=128, help="images in the shared activation set")
        p.add_argument("--threads", type=int, default=2)
        p.add_argument("--tag", default="", help="suffix of this run's doc sections, pictures and cache folders (e.g. "
                                                 "dit), so a second model's run sits beside the first")

    def section(self, args) -> str:
        return getattr(args, "section", None) or tagged(args, self.name.removeprefix("sae_"))

    def path(self, args) -> Path:
        return RESULTS / f"sae_{self.section(args)}.json"

    def section_of(self, path: Path) -> str:
        return path.stem.removeprefix("sae_")


def hooks(pipe) -> list[str]:
    """The benches' two hookpoints on this pipeline's denoiser (the first is the one probes and steering read)."""
    from cadiff.models.loading import denoiser

    name = type(denoiser(pipe)).__name__
    if name not in HOOKS_OF:
        raise SystemExit(f"the SAE benches know hookpoints for {', '.join(HOOKS_OF)}, not {name}")
    return HOOKS_OF[name]


def load(args):
    import torch

    import cadiff

    torch.set_num_threads(args.threads)
    return cadiff.load_pipeline(args.model)


def random_prompts(n: int, seed: int) -> list[str]:
    """Shapes-world captions with attributes left open at random, as the model was trained."""
    from cadiff.worlds import get_world

    return get_world("shapes").training_prompts(n, seed)


def shared_store(args, pipe):
    """The shared activation folder (the two bench hookpoints, every step; collected once, resumable), sized by --images / --quick."""
    from tqdm.auto import tqdm

    from cadiff.sae import collect_activations

    n = 64 if args.quick else args.images
    out = Path(args.cache) / tagged(args, f"{'quick' if args.quick else 'full'}_store")
    prompts = random_prompts(n, seed=0)
    with tqdm(total=n, desc="collect", unit="img", file=sys.stderr) as bar:
        return collect_activations(pipe, prompts, list(range(n)), out, hookpoints=hooks(pipe), at_steps="all", shard_size=32,
                                   store_dtype="float16", model_source=args.model, progress=bar.update)


def window_sae(args, store, hookpoint: str, window: str):
    """The SAE of (hookpoint, cond, window) shared by the concept and steering benches: k 10, d_sae 4 x width,
    about 60k training tokens (several epochs where the window holds fewer)."""
    import numpy as np

    from cadiff.sae import window_steps

    steps = window_steps(window, store.meta["num_inference_steps"])
    epochs = max(1, int(np.ceil(60_000 / (store.tokens(hookpoint, "cond", steps) * 0.75))))
    return cached_sae(args, store, hookpoint, steps, f"{SHORT[hookpoint]}_{window}", k=10, expansion=4, lr=1e-3,
                      batch_size=256, epochs=epochs, dead_tokens=50_000)


def table(header: list[str], rows: list[list], float_format: str = "{:.3f}") -> str:
    """A markdown table; floats with 3 decimals unless told."""
    return common.table(header, rows, float_format)


def cached_sae(args, store, hookpoint: str, steps: list[int], name: str, **cfg_kwargs):
    """Train an SAE on (hookpoint, cond, steps) once and keep it in the cache folder; returns (sae, metrics)."""
    import json

    from cadiff.sae import SAETrainConfig, TopKSAE, train_sae

    path = Path(args.cache) / tagged(args, f"{'quick' if args.quick else 'full'}_sae_{name}")
    if (path / "cfg.json").is_file():
        sae = TopKSAE.load(path, hookpoint=hookpoint)
        return sae, json.loads((path / "metrics.json").read_text())
    sae, metrics = train_sae(store, hookpoint, "cond", steps, SAETrainConfig(**cfg_kwargs))
    sae.save(path, overwrite=True)
    (path / "metrics.json").write_text(json.dumps({k: v for k, v in metrics.items()}, default=str))
    return sae, metrics
