"""Qwen-Image denoisers (`QwenImageTransformer2DModel`): an MMDiT on Flux-style packed 2 x 2 latent tokens and the
same shifted flow-matching schedule (timestep / 1000, velocity units), guided by true CFG: `true_cfg_scale` and a
negative prompt, an unconditional call after the conditional one each step (the pipeline rescales the guided
velocity to the conditional one's norm; the erase objective reads the two calls' outputs). Its VAE is a 3-D
(video) autoencoder normalised per channel by `latents_mean` / `latents_std`. Components: the joint blocks'
attention of both streams (`attn`) and their feed-forwards (`img_mlp`, `txt_mlp`); all weights are unfused."""

from __future__ import annotations

import torch

from cadiff.adapters import register_adapter
from cadiff.adapters.flux import FluxAdapter


@register_adapter
class QwenImageAdapter(FluxAdapter):
    name = "qwenimage"
    denoisers = ("QwenImageTransformer2DModel",)
    latent_arg = "hidden_states"
    block = r"\.transformer_blocks\."
    ff = r"\.(img|txt)_mlp\.net\.(0\.proj|2)\.weight$"
    attn = r"\.attn\."
    ff_out = "img_mlp.net.2"
    esd_frozen = r"^(proj_out|norm_out|time_text_embed|img_in|txt_in|txt_norm)\."
    prompt_keys = ("encoder_hidden_states", "encoder_hidden_states_mask")

    def guidance_input(self, pipe):
        return False  # diffusers' guidance-embedding path of this model does not run: guidance is true CFG

    def unbatched(self):
        return ("img_shapes",)

    def token_grid(self, denoiser, args, kwargs):
        """The grid of the packed image tokens, from the pipeline's `img_shapes` [[(frames, rows, columns)]]."""
        shapes = kwargs.get("img_shapes")
        if not shapes:
            return None
        _, rows, cols = shapes[0][0]
        return int(rows), int(cols)

    def encode_images(self, pipe, images):
        """Pixels to [-1, 1] as one-frame videos, the posterior mean, normalised by the VAE's per-channel mean and
        std, then packed 2 x 2 as the pipeline's latents are."""
        vae = pipe.vae
        x = (images * 2.0 - 1.0).to(device=vae.device, dtype=vae.dtype)[:, :, None]
        with torch.no_grad():
            z = vae.encode(x).latent_dist.mean[:, :, 0]
        mean = torch.tensor(vae.config.latents_mean).view(1, -1, 1, 1).to(z)
        std = torch.tensor(vae.config.latents_std).view(1, -1, 1, 1).to(z)
        return self.from_vae((z - mean) / std)
