"""CogView4 denoisers (`CogView4Transformer2DModel`): a DiT on flow matching whose blocks read image and text tokens
with one set of attention and feed-forward weights, guided by a second, unconditional call after the conditional
one each step (`guidance_scale`). The pipeline passes the denoiser an unshifted timestep grid (1000 .. 1) while
its scheduler steps on sigmas shifted by CogView4's own square-root rule; the scheduler keeps both.

Components: the blocks' joint attention (`attn1.to_q/k/v`, `to_out.0`: it reads the text, so ESD-x trains it and
its keys and values are the 'text' group) and feed-forward (`ff`)."""

from __future__ import annotations

import numpy as np

from cadiff.adapters import COND_FIRST_CALLS, register_adapter
from cadiff.adapters.sd3 import SD3Adapter


@register_adapter
class CogView4Adapter(SD3Adapter):
    name = "cogview4"
    denoisers = ("CogView4Transformer2DModel",)
    latent_arg = "hidden_states"
    block = r"\.transformer_blocks\."
    ff = r"\.ff\.net\.(0\.proj|2)\.weight$"
    attn = r"\.attn1\."
    cross_attention = r"\.attn1\."
    text_input = r"\.attn1\.to_[kv]\.weight$"
    esd_frozen = r"^(proj_out|norm_out|patch_embed|time_condition_embed)\."
    guided_layout = COND_FIRST_CALLS  # a second, unconditional call after the conditional one

    def noised(self, scheduler, x0, noise, index):
        sigma = scheduler.sigmas[index].to(x0.dtype)
        return (1.0 - sigma) * x0 + sigma * noise, noise - x0

    def set_schedule(self, pipe, steps, x0):
        from diffusers.pipelines.cogview4.pipeline_cogview4 import calculate_shift

        cfg = pipe.scheduler.config
        tokens = x0.shape[-2] * x0.shape[-1] // int(pipe.transformer.config.patch_size) ** 2
        timesteps = np.linspace(cfg.num_train_timesteps, 1.0, steps).astype(np.int64).astype(np.float32)
        mu = calculate_shift(tokens, cfg.get("base_image_seq_len", 256), cfg.get("base_shift", 0.25),
                             cfg.get("max_shift", 0.75))
        pipe.scheduler.set_timesteps(timesteps=timesteps, sigmas=timesteps / cfg.num_train_timesteps, mu=mu)

    def _image_stream(self, output):
        return output[0]  # a block returns (image stream, text stream)

    def with_block_tokens(self, args, kwargs, output, tokens, grid):
        return (tokens, output[1])
