"""Flux denoisers (`FluxTransformer2DModel`): rectified flow on packed latent tokens, velocity units like SD3, the
pipeline passing timestep / 1000. A model with a guidance embedding (Flux-dev) takes the guidance as an input and
makes one call per step, so the erase objective's base output costs one extra forward per step; one without it
(Flux-schnell and its undistilled descendants) is guided by true CFG: `true_cfg_scale` and a negative prompt, a
second, unconditional call after the conditional one each step. Components: the double blocks' attention and
feed-forward (`transformer_blocks`), and the single blocks' (`single_transformer_blocks`: `attn`, `proj_mlp`)."""

from __future__ import annotations

import numpy as np

import re

import torch

from cadiff.adapters import COND_FIRST_CALLS, Part, register_adapter
from cadiff.adapters.sd3 import SD3Adapter


@register_adapter
class FluxAdapter(SD3Adapter):
    name = "flux"
    denoisers = ("FluxTransformer2DModel",)
    latent_arg = "hidden_states"
    block = r"\.(single_)?transformer_blocks\."
    ff = r"\.ff(_context)?\.net\.(0\.proj|2)\.weight$|\.proj_mlp\.weight$"
    attn = r"\.attn\."
    prompt_keys = ("encoder_hidden_states", "pooled_projections", "txt_ids")  # the call's inputs a prompt sets
    guided_layout = COND_FIRST_CALLS  # true CFG, where the model has no guidance embedding

    def model_timestep(self, timestep):
        return timestep / 1000

    def parts(self, denoiser):
        return fused_output_parts(denoiser)

    def token_grid(self, denoiser, args, kwargs):
        """Flux's latents come packed: the grid is in the image token ids, (0, row, column) per token."""
        ids = kwargs.get("img_ids")
        if ids is None:
            return None
        return int(ids[:, 1].max()) + 1, int(ids[:, 2].max()) + 1

    def guidance_input(self, pipe):
        return bool(getattr(pipe.transformer.config, "guidance_embeds", False))

    def call_kwargs(self, pipe, prompts, guidance):
        if self.guidance_input(pipe):
            return {"prompt": prompts, "guidance_scale": guidance}
        if guidance > 1.0:
            return {"prompt": prompts, "true_cfg_scale": guidance, "negative_prompt": [""] * len(prompts)}
        return {"prompt": prompts, "true_cfg_scale": 1.0}


    def unbatched(self):
        return ("txt_ids", "img_ids")

    def from_vae(self, latents):
        """(N, C, H, W) -> (N, H/2 * W/2, 4C): every 2 x 2 patch one token, as the Flux pipeline packs."""
        n, c, h, w = latents.shape
        return latents.view(n, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5).reshape(n, (h // 2) * (w // 2), 4 * c)

    def set_schedule(self, pipe, steps, x0):
        shifted_schedule(pipe, steps, x0.shape[1])


def shifted_schedule(pipe, steps: int, tokens: int, sigmas=None) -> None:
    """The Flux pipeline's schedule, which most flow-matching pipelines copy: sigmas 1 .. 1/steps (or `sigmas`),
    shifted by mu for `tokens` image tokens (where the scheduler shifts dynamically)."""
    from diffusers.pipelines.flux.pipeline_flux import calculate_shift

    cfg = pipe.scheduler.config
    mu = calculate_shift(tokens, cfg.get("base_image_seq_len", 256), cfg.get("max_image_seq_len", 4096),
                         cfg.get("base_shift", 0.5), cfg.get("max_shift", 1.15))
    pipe.scheduler.set_timesteps(sigmas=np.linspace(1.0, 1 / steps, steps) if sigmas is None else sigmas, mu=mu)


def fused_output_parts(denoiser: torch.nn.Module) -> dict[str, tuple[Part, ...]]:
    """The single-stream blocks' `proj_out` (Flux.1, Chroma, HunyuanImage): its input columns are the attention
    output (one slice per head of the block's attention) and then the MLP's hidden units."""
    out = {}
    for name, module in denoiser.named_modules():
        linear, attn = getattr(module, "proj_out", None), getattr(module, "attn", None)
        if re.search(r"single_transformer_blocks\.\d+$", name) and isinstance(linear, torch.nn.Linear) and attn:
            width = linear.out_features
            heads = (f"{name}.attn", int(attn.heads)) if width % int(attn.heads) == 0 else None
            out[f"{name}.proj_out.weight"] = (Part("attn", "attn", 1, 0, width, heads),
                                              Part("mlp", "ff", 1, width, linear.in_features))
    return out
