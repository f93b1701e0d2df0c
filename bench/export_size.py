"""How big an exported erase is, and how long exporting and loading it take: every format beside the model's whole
checkpoint, for the embedded shapes U-Net (fp32) and a Stable Diffusion 1.5-size random pipeline (fp16, as its
checkpoints are published), each with a 3 % per-row erase of the `linear` group (the calibrated erase's kind of
selection; the scores are random, since the sizes depend on how many weights are zeroed, not which).

Writes bench/results/export_size.json and the section `export_size` of docs/exports.md.

    .venv/bin/python bench/export_size.py            # (--quick: a tiny pipeline, to check the script)
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from common import ROOT, Benchmark, Timer, table

FORMATS = ("single-file", "diffusers", "comfyui", "lycoris", "peft")
RATIO = 0.03


def _bytes(path: Path) -> int:
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _sd15(dtype):
    """A random pipeline at SD 1.5's size: its U-Net, VAE and CLIP text encoder configs (diffusers' and transformers'
    defaults are SD 1.5's U-Net; the others written here), the shapes world's tokenizer."""
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from cadiff.worlds.shapes.architecture import build_tokenizer

    torch.manual_seed(0)
    vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=4,
                        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4)
    text = CLIPTextModel(CLIPTextConfig(vocab_size=49408, hidden_size=768, intermediate_size=3072,
                                        num_hidden_layers=12, num_attention_heads=12, max_position_embeddings=77))
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=build_tokenizer(), unet=UNet2DConditionModel(),
                                   scheduler=DDIMScheduler(), safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    return pipe.to(dtype=dtype)


def _tiny():
    import sys

    sys.path.insert(0, str(ROOT / "tests"))
    from tiny_pipelines import tiny_sd

    return tiny_sd("sd1")


def measure(label: str, pipe) -> dict:
    """Every format's size and export time for a 3 % per-row erase of `pipe`, and the peft adapter's load time."""
    import copy

    import torch

    from cadiff.attribution import select_parameters
    from cadiff.attribution.mask import Mask
    from cadiff.attribution.selection import select_indices
    from cadiff.editing import edited_copy
    from cadiff.exports import Edit, export
    from cadiff.exports.peft import attach
    from cadiff.models.loading import model_fingerprint

    torch.manual_seed(1)
    scored = {n: p for n, p in select_parameters(pipe.unet, "linear").items() if n.endswith(".weight")}
    indices = select_indices({n: torch.rand(p.shape) for n, p in scored.items()}, ratio=RATIO, scope="row")
    mask = Mask(indices, {n: tuple(scored[n].shape) for n in indices}, {"fingerprint": model_fingerprint(pipe)})
    edit = Edit(edited_copy(pipe, mask), pipe, {"method": "cad", "zeroed": len(mask)})
    with Timer() as t:
        edit.difference  # noqa: B018  (computed once, shared by the patch formats)
    row = {"model": label, "dtype": str(pipe.unet.dtype).removeprefix("torch."),
           "unet_parameters": sum(p.numel() for p in pipe.unet.parameters()),
           "zeroed": len(mask), "scored_weights": sum(p.numel() for p in scored.values()),
           "difference_seconds": t.seconds, "formats": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for form in FORMATS:
            out = Path(tmp) / form
            with Timer() as t:
                export(edit, out, form)
            row["formats"][form] = {"bytes": _bytes(out), "seconds": t.seconds}
            print(label, form, row["formats"][form], flush=True)
        fresh = copy.deepcopy(pipe)
        with Timer() as t:
            attach(fresh, Path(tmp) / "peft", "erase")
        row["peft_attach_seconds"] = t.seconds
    return row


class ExportSize(Benchmark):
    name = "export_size"
    summary = "exported erase sizes per format against the whole checkpoint, export and peft load times"
    doc, title = ROOT / "docs" / "exports.md", "# Exports"

    def run(self, args) -> dict:
        import torch

        import cadiff

        torch.set_num_threads(args.threads)
        models = [("tiny random SD 1.x (check)", _tiny)] if args.quick else [
            ("embedded shapes U-Net", cadiff.load_pipeline), ("SD 1.5-size random", lambda: _sd15(torch.float16))]
        return {"settings": {"ratio": RATIO, "threads": args.threads},
                "rows": [measure(label, make()) for label, make in models]}

    def report(self, results: dict, args) -> str:
        rows = []
        for r in results["rows"]:
            whole = r["formats"]["single-file"]["bytes"]
            rows.append([r["model"], r["dtype"], f"{r['zeroed']:,} of {r['scored_weights']:,}",
                         *[f"{r['formats'][f]['bytes'] / 1e6:.1f} MB ({r['formats'][f]['bytes'] / whole:.0%}), "
                           f"{r['formats'][f]['seconds']:.2f} s" for f in FORMATS],
                         f"{r['peft_attach_seconds']:.2f} s"])
        head = (f"A {results['settings']['ratio']:.0%} per-row erase of the `linear` group, exported in every format "
                f"on {results['settings']['threads']} CPU threads: each format's size (and its share of the whole "
                "single-file checkpoint, the edited model's) and the export's time; the last column is the time "
                "`cadiff.exports.peft.attach` takes to load the adapter onto the model. The patches hold every "
                "module the erase touched whole (a per-row erase touches every row of every scored matrix); the "
                "peft adapter holds only the zeroed weights' values and indices. JSON: "
                "`bench/results/export_size.json`.")
        return head + "\n\n" + table(["model", "dtype", "zeroed of scored", *FORMATS, "peft load"], rows)


if __name__ == "__main__":
    ExportSize().main()
