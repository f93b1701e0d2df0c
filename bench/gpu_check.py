"""The one-shot device check: run it once where a GPU is lent (10-15 minutes of device time; `--esd-iterations`
trims the longest part) and keep its output.
SD 1.5-size and Flux.1-size pipelines with random weights at their native resolution (512 and 1024 pixels), built
from configs (nothing is downloaded), one process:

- `attribute` (the erase objective, the trajectory estimator): seconds per objective step and peak GPU memory, with
  and without `checkpointing`; a request the GPU cannot hold is recorded as out of memory, not a crash;
- CAD against ESD-u at its paper's 1,000 iterations, SD 1.5 size: seconds each.

`--quick` shrinks every model to test size, so that the script itself is checked on the CPU.

    .venv/bin/python bench/gpu_check.py --device cuda                        # where a GPU is lent
    .venv/bin/python bench/gpu_check.py --quick --doc /tmp/gpu_check.md      # checking the script on the CPU
"""

from __future__ import annotations

import sys
import time

from common import ROOT, Benchmark, hardware, table

sys.path.insert(0, str(ROOT / "tests"))  # the word-level tokenizer the tiny pipelines use


def sd15(quick: bool):
    """Stable Diffusion 1.5's architecture with random weights (a CLIP ViT-L/14 text tower, its VAE and U-Net)."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from cadiff.worlds.shapes.architecture import VOCAB, build_tokenizer

    wide = (32, 64) if quick else (320, 640, 1280, 1280)
    unet = UNet2DConditionModel(sample_size=8 if quick else 64, block_out_channels=wide, cross_attention_dim=768,
                                layers_per_block=1 if quick else 2, norm_num_groups=8 if quick else 32,
                                down_block_types=("CrossAttnDownBlock2D",) * (len(wide) - 1) + ("DownBlock2D",),
                                up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * (len(wide) - 1))
    text = CLIPTextModel(CLIPTextConfig(vocab_size=len(VOCAB), hidden_size=768, intermediate_size=3072,
                                        num_hidden_layers=1 if quick else 12, num_attention_heads=12,
                                        max_position_embeddings=77, pad_token_id=0, bos_token_id=1, eos_token_id=2))
    vae = AutoencoderKL(block_out_channels=(32, 32) if quick else (128, 256, 512, 512), latent_channels=4,
                        down_block_types=("DownEncoderBlock2D",) * (2 if quick else 4),
                        up_block_types=("UpDecoderBlock2D",) * (2 if quick else 4), norm_num_groups=32)
    scheduler = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False,
                              set_alpha_to_one=False, steps_offset=1)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=build_tokenizer(), unet=unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def flux1(quick: bool):
    """Flux.1 [dev]'s architecture with random weights (its transformer's diffusers defaults, a guidance embedding; a
    one-layer T5 of T5-XXL's width beside CLIP-L: the text towers' depth does not matter here)."""
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    from cadiff.worlds.shapes.architecture import VOCAB, build_tokenizer

    small = dict(num_layers=1, num_single_layers=1, attention_head_dim=16, num_attention_heads=2,
                 joint_attention_dim=64, pooled_projection_dim=32, axes_dims_rope=(4, 6, 6)) if quick else {}
    transformer = FluxTransformer2DModel(guidance_embeds=True, **small)
    text = CLIPTextModel(CLIPTextConfig(vocab_size=len(VOCAB), hidden_size=32 if quick else 768,
                                        intermediate_size=64 if quick else 3072, num_hidden_layers=1,
                                        num_attention_heads=2 if quick else 12, max_position_embeddings=77,
                                        pad_token_id=0, bos_token_id=1, eos_token_id=2))
    t5 = T5EncoderModel(T5Config(vocab_size=len(VOCAB), d_model=64 if quick else 4096, d_kv=32 if quick else 64,
                                 d_ff=128 if quick else 10240, num_layers=1, num_heads=2 if quick else 64,
                                 pad_token_id=0, eos_token_id=2))
    vae = AutoencoderKL(block_out_channels=(32, 32) if quick else (128, 256, 512, 512), latent_channels=16,
                        down_block_types=("DownEncoderBlock2D",) * (2 if quick else 4),
                        up_block_types=("UpDecoderBlock2D",) * (2 if quick else 4), norm_num_groups=32,
                        scaling_factor=0.3611, shift_factor=0.1159, use_quant_conv=False, use_post_quant_conv=False)
    scheduler = FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                                                base_image_seq_len=256, max_image_seq_len=4096)
    pipe = FluxPipeline(scheduler=scheduler, vae=vae, text_encoder=text.eval(), tokenizer=build_tokenizer(),
                        text_encoder_2=t5.eval(), tokenizer_2=build_tokenizer(), transformer=transformer.eval())
    pipe.default_sample_size = 8 if quick else 128
    pipe.set_progress_bar_config(disable=True)
    return pipe


def measure(fn, device: str) -> dict:
    """fn()'s seconds and the peak GPU memory it took (GB), or the out-of-memory it ran into."""
    import torch

    cuda = str(device).startswith("cuda")
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        torch.cuda.synchronize()
    start = time.perf_counter()
    try:
        fn()
    except torch.OutOfMemoryError as exc:
        return {"error": f"out of memory: {str(exc).splitlines()[0][:160]}"}
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return {"seconds": round(seconds, 3),
            "peak_gb": round(torch.cuda.max_memory_allocated() / 1e9, 2) if cuda else None}


class GPUCheck(Benchmark):
    name = "gpu_check"
    summary = "SD 1.5 and Flux.1 sizes at native resolution on a GPU: attribution time and memory, CAD against ESD"

    def options(self, p) -> None:
        super().options(p)
        p.add_argument("--esd-iterations", type=int, default=1000)

    def report(self, results: dict, args) -> str:
        return report(results)

    def run(self, args) -> dict:
        import torch

        import cadiff
        from cadiff.editing.methods.esd import ESDConfig

        torch.manual_seed(0)
        dtype = torch.float32 if args.quick or args.device == "cpu" else torch.bfloat16
        out = {"device": hardware(args), "quick": args.quick, "runs": {}}
        for name, build, steps, guidance in (("sd15", sd15, 10, 7.5), ("flux1", flux1, 4, 3.5)):
            pipe = build(args.quick).to(args.device, dtype)
            for checkpointing in (False, True):
                key = f"{name} attribute{' checkpointing' if checkpointing else ''}"
                got = measure(lambda: cadiff.attribute(pipe, "a red circle", seeds=1, steps=steps, guidance=guidance,
                                                       components="attn", checkpointing=checkpointing,
                                                       progress=False), args.device)
                out["runs"][key] = {**got, "steps": steps, "per_step": round(got["seconds"] / steps, 3)
                                    if "seconds" in got else None}
                print(key, out["runs"][key], flush=True)
            if name == "sd15":
                cad = measure(lambda: cadiff.erase(pipe, "a red circle", cadiff.CADConfig(
                    components="ff", ratio=0.03, seeds=4, steps=steps, guidance=guidance), progress=False),
                    args.device)
                esd = measure(lambda: cadiff.erase(pipe, "a red circle", ESDConfig(
                    iterations=2 if args.quick else args.esd_iterations, steps=steps)), args.device)
                out["runs"]["sd15 CAD erase"], out["runs"]["sd15 ESD-u erase"] = cad, esd
                print("CAD", cad, "ESD", esd, flush=True)
            pipe = None  # the next model gets the memory
            if str(args.device).startswith("cuda"):
                torch.cuda.empty_cache()
        return out


def report(results: dict) -> str:
    rows = [[key, f"{r['seconds']:.1f}" if "seconds" in r else r.get("error", ""),
             f"{r['per_step']:.2f}" if r.get("per_step") is not None else "",
             f"{r['peak_gb']:.1f}" if r.get("peak_gb") is not None else ""] for key, r in results["runs"].items()]
    head = (f"`bench/gpu_check.py` on {results['device']}{' (--quick: test sizes)' if results['quick'] else ''}: "
            "SD 1.5- and Flux.1-size pipelines with random weights at 512 and 1024 pixels (bf16 weights, fp32 "
            "scores), `attribute` of one trajectory (the `attn` weights) with and without checkpointing, and CAD "
            "(4 trajectories, 3 % of the ff weights per row) against ESD-u's 1,000 iterations at SD 1.5 size. JSON: "
            "`bench/results/gpu_check.json`.")
    return head + "\n\n" + table(["run", "seconds", "seconds a step", "peak GPU GB"], rows)


if __name__ == "__main__":
    GPUCheck().main()
