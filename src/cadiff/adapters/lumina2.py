"""Lumina Image 2.0 denoisers (`Lumina2Transformer2DModel`): a single-stream DiT on flow matching with a reversed
timestep (1 - sigma, 0 is pure noise, unscaled) whose output the pipeline negates into the scheduler's velocity;
guided by a second, unconditional call after the conditional one each step (`guidance_scale`; the pipeline also
rescales the guided prediction, and can drop guidance late in the run, where the trace then records a step with
no unconditional branch). The caption's mask says each row's caption length, and a row's image tokens follow its
caption in the joint sequence.

Components: the context refiner's (caption only), noise refiner's (image only) and main `layers`' attention
(`attn.to_q/k/v`, `to_out.0`; keys and values have fewer, grouped heads) and SwiGLU feed-forwards
(`feed_forward.linear_1/2/3`). The context refiner's keys and values are the 'text' group, its attention what
ESD-x trains; an SAE reads the image tokens of the main layers."""

from __future__ import annotations

import torch

from cadiff.adapters import COND_FIRST_CALLS, register_adapter
from cadiff.adapters.flux import shifted_schedule
from cadiff.adapters.sd3 import SD3Adapter


@register_adapter
class Lumina2Adapter(SD3Adapter):
    name = "lumina2"
    denoisers = ("Lumina2Transformer2DModel",)
    latent_arg = "hidden_states"
    block = r"\.(noise_refiner|context_refiner|layers)\.\d+\."
    ff = r"\.feed_forward\.linear_[123]\.weight$"
    attn = r"\.attn\."
    cross_attention = r"^context_refiner\.\d+\.attn\."
    text_input = r"^context_refiner\.\d+\.attn\.to_[kv]\.weight$"
    ff_out = "feed_forward.linear_2"
    esd_frozen = r"^(norm_out|x_embedder|time_caption_embed)\."
    guided_layout = COND_FIRST_CALLS  # a second, unconditional call after the conditional one

    def model_timestep(self, timestep):
        return 1 - timestep / 1000

    def prediction(self, denoiser, output):
        return -output  # the scheduler's velocity, noise - x0, as the pipeline turns it

    def set_schedule(self, pipe, steps, x0):
        shifted_schedule(pipe, steps, x0.shape[1])  # as the pipeline does: the latents' second axis, its channels

    def hookpoints(self, denoiser):
        return [f"layers.{i}" for i in range(len(denoiser.layers))]

    def token_grid(self, denoiser, args, kwargs):
        latent = kwargs.get("hidden_states", args[0] if args else None)
        patch = int(denoiser.config.patch_size)
        return latent.shape[-2] // patch, latent.shape[-1] // patch

    @staticmethod
    def _image_rows(args, kwargs, count: int, length: int) -> torch.Tensor:
        """Positions (B, count) of each row's image tokens: the last `count` of its valid tokens (all tokens when
        the rows' captions are equally long and the layer gets no mask)."""
        mask = args[1] if len(args) > 1 else kwargs.get("attention_mask")
        ends = torch.full((1,), length) if mask is None else mask.sum(1).cpu()
        return ends.view(-1, 1) - count + torch.arange(count)

    def block_tokens(self, args, kwargs, output, grid=None):
        inp = args[0] if args else kwargs["hidden_states"]
        rows = self._image_rows(args, kwargs, grid[0] * grid[1], inp.shape[1]).expand(inp.shape[0], -1).to(inp.device)
        pick = rows[..., None].expand(-1, -1, inp.shape[-1])
        return inp.gather(1, pick), output.gather(1, pick), grid

    def with_block_tokens(self, args, kwargs, output, tokens, grid):
        rows = self._image_rows(args, kwargs, tokens.shape[1], output.shape[1]).expand(output.shape[0], -1)
        return output.scatter(1, rows.to(output.device)[..., None].expand(-1, -1, output.shape[-1]), tokens)

    def _image_stream(self, output):
        return output
