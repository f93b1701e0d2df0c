"""Chroma denoisers (`ChromaTransformer2DModel`): Flux.1's architecture and packed latents without a guidance
embedding or pooled text, every block's modulation drawn from one shared MLP (`distilled_guidance_layer`), a T5
encoder whose mask spans text and image tokens. Guided by true CFG through `guidance_scale`: an unconditional call
(negative prompt "") after the conditional one each step."""

from __future__ import annotations

from cadiff.adapters import register_adapter
from cadiff.adapters.flux import FluxAdapter


@register_adapter
class ChromaAdapter(FluxAdapter):
    name = "chroma"
    denoisers = ("ChromaTransformer2DModel",)
    esd_frozen = r"^(proj_out|norm_out|x_embedder|context_embedder|distilled_guidance_layer)\."
    prompt_keys = ("encoder_hidden_states", "txt_ids", "attention_mask")
    checkpointing_differs = "diffusers' checkpointed single blocks drop the attention mask"

    def call_kwargs(self, pipe, prompts, guidance):
        return {"prompt": prompts, "guidance_scale": guidance}
