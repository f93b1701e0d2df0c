"""What attribution holds in memory on the full-size denoisers: each family's denoiser built on the meta device (no
memory, no weights) from its diffusers class's own defaults, which are the published flagship configurations for
most families (the table says which model each default is), and for each: its parameters, its weights' bytes in
bf16, the fp32 accumulators `attribute` keeps for the `ff`, `attn` and `linear` groups (one fp32 copy of the
weights scored), whether one 80 GB GPU holds the weights and one group's accumulators (what cadiff's data-parallel
attribution needs on every GPU today), and how many would with the accumulators split among them (sharded
accumulators: not in cadiff yet) — before activations, which grow with the resolution and are not counted here.

Writes bench/results/memory_model.json and the section `memory_model` of docs/cad.md.

    .venv/bin/python bench/memory_model.py
"""

from __future__ import annotations

import math

from common import ROOT, Benchmark, table

GPU = 80 * 10**9
GROUPS = ("ff", "attn", "linear")
# denoiser class -> (family, the model its diffusers defaults describe)
DENOISERS = {
    "UNet2DConditionModel": ("unet", "Stable Diffusion 1.5"),
    "SD3Transformer2DModel": ("sd3", "SD3 (the class defaults: 18 blocks; SD3 Medium has 24)"),
    "PixArtTransformer2DModel": ("pixart", "PixArt-α XL (0.6B)"),
    "SanaTransformer2DModel": ("sana", "Sana 1.6B"),
    "FluxTransformer2DModel": ("flux", "Flux.1 [dev] / [schnell] (12B)"),
    "ChromaTransformer2DModel": ("chroma", "Chroma (8.9B)"),
    "QwenImageTransformer2DModel": ("qwenimage", "Qwen-Image (20B)"),
    "Flux2Transformer2DModel": ("flux2", "FLUX.2 [dev] (32B)"),
    "ZImageTransformer2DModel": ("zimage", "Z-Image (6B)"),
    "Lumina2Transformer2DModel": ("lumina2", "Lumina Image 2.0 (2.6B)"),
    "CogView4Transformer2DModel": ("cogview4", "CogView4 (the class defaults; CogView4-6B is larger)"),
    "HunyuanImageTransformer2DModel": ("hunyuanimage", "HunyuanImage 2.1 (17B)"),
    "HiDreamImageTransformer2DModel": ("hidream", "HiDream-I1 (17B; config written: its class has no defaults)"),
}
# Configs written where the class's defaults describe no model (from the published config)
WRITTEN = {"HiDreamImageTransformer2DModel": dict(
    patch_size=2, in_channels=16, out_channels=16, num_layers=16, num_single_layers=32, attention_head_dim=128,
    num_attention_heads=20, caption_channels=[4096, 4096], text_emb_dim=2048, num_routed_experts=4,
    num_activated_experts=2, axes_dims_rope=(64, 32, 32), max_resolution=(128, 128),
    llama_layers=[*range(16), *range(16, 32), *range(16, 32)])}


class MemoryModel(Benchmark):
    name = "memory_model"
    summary = "weights and accumulator bytes of every family's full-size denoiser (meta device), and GPUs needed"
    doc, title = ROOT / "docs" / "cad.md", "# CAD"

    def report(self, results: dict, args) -> str:
        return report(results)

    def run(self, args) -> dict:
        import diffusers
        import torch

        from cadiff.attribution import select_parameters
        from cadiff.attribution.components import grouped_scores

        out = {}
        for name, (family, model) in DENOISERS.items():
            with torch.device("meta"):
                net = getattr(diffusers, name)(**WRITTEN.get(name, {}))
            params = sum(p.numel() for p in net.parameters())
            row = {"family": family, "model": model, "parameters": params, "weights_bf16": 2 * params}
            for group in GROUPS:  # the weights `attribute` scores: a fused weight's slices in the group (meta tensors)
                scored = sum(w.numel() for w in grouped_scores(net, group, select_parameters(net, group))[0].values())
                row[f"accumulators_{group}"] = 4 * scored
                row[f"one_gpu_{group}"] = 2 * params + 4 * scored <= GPU
                row[f"gpus_{group}"] = gpus(2 * params, 4 * scored)
            out[name] = row
            print(name, row, flush=True)
        return {"gpu_bytes": GPU, "denoisers": out}


def gpus(weights: int, accumulators: int) -> int | None:
    """80 GB GPUs that hold the weights each and the accumulators split among them (None: the weights alone do
    not fit one)."""
    room = GPU - weights
    return None if room <= 0 else max(1, math.ceil(accumulators / room))


def report(results: dict) -> str:
    rows = []
    for name, r in results["denoisers"].items():
        rows.append([r["model"], name, f"{r['parameters'] / 1e9:.2f} B", f"{r['weights_bf16'] / 1e9:.1f}",
                     *[f"{r[f'accumulators_{g}'] / 1e9:.1f} ({'yes' if r[f'one_gpu_{g}'] else 'no'})"
                       for g in GROUPS],
                     *[str(r[f"gpus_{g}"] or "–") for g in GROUPS]])
    head = ("Each family's denoiser built on the meta device from its diffusers class's defaults (the model they "
            "describe in the first column; `bench/memory_model.py`), in GB: the weights in bf16, the fp32 "
            "accumulators `attribute` keeps for each component group (one fp32 copy of the weights it scores) and, "
            "in brackets, whether one 80 GB GPU holds the weights with them (what data-parallel attribution needs on "
            "each GPU today); *GPUs*: how many 80 GB GPUs would hold the weights each with the accumulators split "
            "among them (sharded accumulators, not in cadiff yet). Activations, which grow with the resolution, are "
            "not counted. JSON: `bench/results/memory_model.json`.")
    return head + "\n\n" + table(["model", "denoiser", "parameters", "weights bf16", *[f"accumulators {g} (one GPU)" for g in GROUPS],
                                  *[f"GPUs {g}" for g in GROUPS]], rows)


if __name__ == "__main__":
    MemoryModel().main()
