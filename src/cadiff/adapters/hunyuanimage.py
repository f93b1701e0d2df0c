"""HunyuanImage 2.1 denoisers (`HunyuanImageTransformer2DModel`): an MMDiT (double- and single-stream blocks) on
4-D flow-matching latents with a raw timestep (sigma * 1000), a timestep-dependent text refiner and a second,
glyph (ByT5) text stream. Its pipeline takes no guidance keyword: guidance is its `guider` component, which
cadiff replaces for the call by one at the asked scale (`guider.new(guidance_scale=...)`); it makes a second,
unconditional call (negative prompt "") after the conditional one each step, and past its start step combines
them by adaptive projected guidance. A guidance-distilled model (a guidance embedding) takes
`distilled_guidance_scale` and makes one call. The schedule is sigmas 1 .. 1/N under the scheduler's own shift.

Components: the double blocks' attention of both streams (`attn`) and feed-forwards (`ff`, `ff_context`), the
single blocks' attention projections and `proj_mlp`; a single block's `proj_out` fuses the attention and MLP
outputs: its attention columns are in 'attn' (by head), its MLP columns in 'ff'."""

from __future__ import annotations

import contextlib

import numpy as np

from cadiff.adapters import COND_FIRST_CALLS, UNGUIDED, register_adapter
from cadiff.adapters.flux import fused_output_parts
from cadiff.adapters.sd3 import SD3Adapter


@register_adapter
class HunyuanImageAdapter(SD3Adapter):
    name = "hunyuanimage"
    denoisers = ("HunyuanImageTransformer2DModel",)
    latent_arg = "hidden_states"
    block = r"\.(single_)?transformer_blocks\."
    ff = r"\.ff(_context)?\.net\.(0\.proj|2)\.weight$|\.proj_mlp\.weight$"
    attn = r"\.attn\."
    esd_frozen = r"^(proj_out|norm_out|x_embedder|context_embedder|context_embedder_2|time_guidance_embed)\."
    checkpointing_differs = "diffusers' checkpointed text refiner fails on its own attention mask"
    prompt_keys = ("encoder_hidden_states", "encoder_attention_mask", "encoder_hidden_states_2",
                   "encoder_attention_mask_2")  # the call's inputs a prompt sets (not the guidance or timestep_r)

    def parts(self, denoiser):
        return fused_output_parts(denoiser)

    def guidance_input(self, pipe):
        return bool(getattr(pipe.transformer.config, "guidance_embeds", False))

    def call_kwargs(self, pipe, prompts, guidance):
        if self.guidance_input(pipe):
            return {"prompt": prompts, "distilled_guidance_scale": guidance}
        return {"prompt": prompts, "negative_prompt": [""] * len(prompts)}

    @contextlib.contextmanager
    def call_context(self, pipe, guidance):
        guiders = {name: getattr(pipe, name, None) for name in ("guider", "ocr_guider")}  # ocr: quoted text
        if self.guidance_input(pipe):
            yield
            return
        for name, guider in guiders.items():
            if guider is not None:
                setattr(pipe, name, guider.new(guidance_scale=guidance))
        try:
            yield
        finally:
            for name, guider in guiders.items():
                setattr(pipe, name, guider)

    def layout(self, pipe, guidance):
        """Its guider guides at any scale but 1 (below 1 too), and a pipeline without one never does."""
        if self.guidance_input(pipe) or getattr(pipe, "guider", None) is None:
            return UNGUIDED
        return COND_FIRST_CALLS if guidance is None or guidance != 1.0 else UNGUIDED

    def token_grid(self, denoiser, args, kwargs):
        latent = kwargs.get("hidden_states", args[0] if args else None)
        rows, cols = denoiser.config.patch_size
        return latent.shape[-2] // rows, latent.shape[-1] // cols

    def set_schedule(self, pipe, steps, x0):
        pipe.scheduler.set_timesteps(sigmas=np.linspace(1.0, 0.0, steps + 1)[:-1])

    def _image_stream(self, output):
        return output[0]  # a block returns (image stream, text stream)

    def with_block_tokens(self, args, kwargs, output, tokens, grid):
        return (tokens, output[1])
