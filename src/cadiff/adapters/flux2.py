"""FLUX.2 denoisers (`Flux2Transformer2DModel`), [dev] (`Flux2Pipeline`) and [klein] (`Flux2KleinPipeline`):
rectified flow on packed tokens of 2 x 2-patchified VAE latents normalised by the VAE's batch-norm statistics,
timestep / 1000, velocity units. [dev] takes guidance as an input (a guidance embedding, one call per step);
[klein] base is guided by classifier-free guidance as a second, unconditional call (negative prompt "") after
the conditional one each step, and [klein] distilled (`is_distilled` in the pipeline's config) by none.
Neither pipeline takes the prompt first: it is always passed by keyword. The schedule's shift is FLUX.2's
empirical mu of the token count and the number of steps.

Components: the double blocks' attention (`attn`: the image stream's `to_q/k/v`, `to_out.0`, the text stream's
`add_*_proj`, `to_add_out`) and SwiGLU feed-forwards (`ff`, `ff_context`: `linear_in`, `linear_out`). The single
blocks fuse attention and feed-forward in `attn.to_qkv_mlp_proj` (rows: query, key, value, then the SwiGLU's gate
and up projections) and `attn.to_out` (columns: the attention output, then the MLP's): their attention slices are
in the 'attn' group, split by head, and their MLP slices in 'ff'. Block modulation is shared by all blocks and
sits outside them."""

from __future__ import annotations

import numpy as np
import torch

from cadiff.adapters import UNGUIDED, Part, register_adapter
from cadiff.adapters.flux import FluxAdapter


@register_adapter
class Flux2Adapter(FluxAdapter):
    name = "flux2"
    denoisers = ("Flux2Transformer2DModel",)
    latent_arg = "hidden_states"
    block = r"\.(single_)?transformer_blocks\."
    ff = r"\.ff(_context)?\.linear_(in|out)\.weight$"
    attn = r"\.attn\.(to_[qkv]|add_[qkv]_proj|to_out\.0|to_add_out)\."
    cross_attention = r"\.attn\.(add_[qkv]_proj|to_add_out)\."
    text_input = r"\.attn\.add_[kv]_proj\.weight$"
    ff_out = "ff.linear_out"
    esd_frozen = (r"^(proj_out|norm_out|x_embedder|context_embedder|time_guidance_embed|double_stream_modulation_img"
                  r"|double_stream_modulation_txt|single_stream_modulation)\.")
    prompt_keys = ("encoder_hidden_states", "txt_ids")

    def call_kwargs(self, pipe, prompts, guidance):
        return {"prompt": prompts, "guidance_scale": guidance}

    def layout(self, pipe, guidance):
        """[dev] ([klein] distilled) is never guided by branches: a guidance embedding (a step-distilled model)."""
        return UNGUIDED if getattr(pipe.config, "is_distilled", False) else super().layout(pipe, guidance)

    def unbatched(self):
        return ()

    def parts(self, denoiser):
        out = {}
        for name, module in denoiser.named_modules():
            fused = getattr(module, "to_qkv_mlp_proj", None)
            if not isinstance(fused, torch.nn.Linear):
                continue
            inner, heads = int(module.inner_dim), (name, int(module.heads))
            out[f"{name}.to_qkv_mlp_proj.weight"] = (
                Part("q", "attn", 0, 0, inner, heads), Part("k", "attn", 0, inner, 2 * inner, heads),
                Part("v", "attn", 0, 2 * inner, 3 * inner, heads), Part("mlp_in", "ff", 0, 3 * inner, fused.out_features))
            out[f"{name}.to_out.weight"] = (Part("attn", "attn", 1, 0, inner, heads),
                                            Part("mlp_out", "ff", 1, inner, module.to_out.in_features))
        return out

    def token_grid(self, denoiser, args, kwargs):
        """The grid of the image tokens, from their ids (time, row, column, layer) per token."""
        ids = kwargs.get("img_ids")
        if ids is None:
            return None
        ids = ids[0] if ids.ndim == 3 else ids
        return int(ids[:, 1].max()) + 1, int(ids[:, 2].max()) + 1

    def set_schedule(self, pipe, steps, x0):
        from diffusers.pipelines.flux2.pipeline_flux2 import compute_empirical_mu

        mu = compute_empirical_mu(image_seq_len=x0.shape[1], num_steps=steps)
        pipe.scheduler.set_timesteps(sigmas=np.linspace(1.0, 1 / steps, steps), mu=mu)

    def from_vae(self, latents):
        raise NotImplementedError("FLUX.2 latents are normalised by the VAE's statistics: use encode_images")

    def _tokens(self, vae, z: torch.Tensor) -> torch.Tensor:
        """VAE latents (N, C, H, W) -> 2 x 2 patches (channel c * 4 + dy * 2 + dx), normalised by the VAE's
        batch-norm statistics, packed row-major into tokens (N, H/2 * W/2, 4C): the pipeline's own layout."""
        n, c, h, w = z.shape
        z = z.view(n, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4).reshape(n, 4 * c, h // 2, w // 2)
        mean = vae.bn.running_mean.view(1, -1, 1, 1).to(z)
        std = torch.sqrt(vae.bn.running_var.view(1, -1, 1, 1) + vae.config.batch_norm_eps).to(z)
        z = (z - mean) / std
        return z.reshape(n, 4 * c, -1).permute(0, 2, 1)

    def encode_images(self, pipe, images):
        vae = pipe.vae
        x = (images * 2.0 - 1.0).to(device=vae.device, dtype=vae.dtype)
        with torch.no_grad():
            z = vae.encode(x).latent_dist.mean
        return self._tokens(vae, z)

    def sampled_latents(self, pipe, latents):
        """[klein] returns VAE-space latents for output_type='latent'; [dev] its tokens already."""
        return self._tokens(pipe.vae, latents) if latents.ndim == 4 else latents
