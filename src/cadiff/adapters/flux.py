"""Flux denoisers (`FluxTransformer2DModel`): rectified flow on packed latent tokens, velocity units like SD3, the
pipeline passing timestep / 1000 and (Flux-dev) a distilled guidance value instead of a guided batch, so the erase
objective's base output costs one extra forward per step. Components: the double blocks' attention and
feed-forward (`transformer_blocks`), and the single blocks' (`single_transformer_blocks`: `attn`, `proj_mlp`)."""

from __future__ import annotations

import numpy as np

from cadiff.adapters import register_adapter
from cadiff.adapters.sd3 import SD3Adapter

PROMPT_KEYS = ("encoder_hidden_states", "pooled_projections", "txt_ids")


@register_adapter
class FluxAdapter(SD3Adapter):
    name = "flux"
    denoisers = ("FluxTransformer2DModel",)
    latent_arg = "hidden_states"
    block = r"\.(single_)?transformer_blocks\."
    ff = r"\.ff(_context)?\.net\.(0\.proj|2)\.weight$|\.proj_mlp\.weight$"
    attn = r"\.attn\."

    def model_timestep(self, timestep):
        return timestep / 1000

    def base_kwargs(self, call_kwargs, base):
        return {**call_kwargs, **{k: base[k] for k in PROMPT_KEYS if k in base}}

    def token_grid(self, denoiser, args, kwargs):
        """Flux's latents come packed: the grid is in the image token ids, (0, row, column) per token."""
        ids = kwargs.get("img_ids")
        if ids is None:
            return None
        return int(ids[:, 1].max()) + 1, int(ids[:, 2].max()) + 1

    def guided_batch(self, guidance):
        return False

    def unbatched(self):
        return ("txt_ids", "img_ids")

    def image_size(self, pipe, denoiser):
        return int(pipe.default_sample_size) * int(pipe.vae_scale_factor)

    def from_vae(self, latents):
        """(N, C, H, W) -> (N, H/2 * W/2, 4C): every 2 x 2 patch one token, as the Flux pipeline packs."""
        n, c, h, w = latents.shape
        return latents.view(n, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5).reshape(n, (h // 2) * (w // 2), 4 * c)

    def set_schedule(self, pipe, steps, x0):
        """The Flux pipeline's schedule: sigmas 1 .. 1/steps, shifted by mu for the image's token count."""
        from diffusers.pipelines.flux.pipeline_flux import calculate_shift

        cfg = pipe.scheduler.config
        mu = calculate_shift(x0.shape[1], cfg.get("base_image_seq_len", 256), cfg.get("max_image_seq_len", 4096),
                             cfg.get("base_shift", 0.5), cfg.get("max_shift", 1.15))
        pipe.scheduler.set_timesteps(sigmas=np.linspace(1.0, 1 / steps, steps), mu=mu)
