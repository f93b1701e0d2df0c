"""HiDream-I1 denoisers (`HiDreamImageTransformer2DModel`): a DiT on 4-D flow-matching latents with four text
encoders, guided by one call on a doubled batch (unconditional rows first) whose output the pipeline negates into
the scheduler's velocity. The timestep keyword is `timesteps` (sigma * 1000). The Llama conditioning holds one
hidden state per layer with the batch on its second axis; the trace sees it with the batch first.

Components: the double-stream blocks' attention of both streams (`attn1.to_q/k/v/out`, the text stream's
`..._t`) and text feed-forward (`ff_t`), the single-stream blocks' attention, and the mixture-of-experts image
feed-forwards' shared experts. diffusers runs the routed experts and their gate without gradient when sampling
(`moe_infer` under `torch.no_grad`), so no score can reach them: they belong to no group."""

from __future__ import annotations

import re

import torch

from cadiff.adapters import register_adapter
from cadiff.adapters.sd3 import SD3Adapter

LLAMA = "encoder_hidden_states_llama3"
ROUTED = r"\.ff_i\.(experts\.|gate\.)|\.ff_i\.gate$"


@register_adapter
class HiDreamAdapter(SD3Adapter):
    name = "hidream"
    denoisers = ("HiDreamImageTransformer2DModel",)
    latent_arg = "hidden_states"
    timestep_arg = "timesteps"
    block = r"\.(double_stream_blocks|single_stream_blocks)\.\d+\.block\."
    ff = r"\.ff_[it]\.(shared_experts\.)?w[123]\.weight$"
    attn = r"\.attn1\."
    cross_attention = r"\.attn1\.(to_[qkv]_t|to_out_t)\."
    text_input = r"\.attn1\.to_[kv]_t\.weight$"
    ff_out = "shared_experts.w2"
    esd_frozen = r"^(final_layer|t_embedder|p_embedder|x_embedder|caption_projection)\."

    def in_group(self, name, param, group):
        if re.search(ROUTED, name):
            return group == "all"  # routed experts and their gate get no gradient when the pipeline samples
        return super().in_group(name, param, group)

    def bind_call(self, denoiser, args, kwargs):
        latent, timestep, call = super().bind_call(denoiser, args, kwargs)
        if isinstance(call.get(LLAMA), torch.Tensor):
            call[LLAMA] = call[LLAMA].transpose(0, 1)  # (layers, batch, ...) -> (batch, layers, ...)
        return latent, timestep, call

    def forward(self, denoiser, latent, timestep, kwargs):
        if timestep.ndim == 0:
            timestep = timestep.expand(latent.shape[0])
        call = {**kwargs, LLAMA: kwargs[LLAMA].transpose(0, 1)} if LLAMA in kwargs else kwargs
        out = denoiser(hidden_states=latent, timesteps=timestep, **call, return_dict=False)
        return self.prediction(denoiser, self.output_of(out))

    def prediction(self, denoiser, output):
        return -output  # the scheduler's velocity, noise - x0, as the pipeline turns it

    def set_schedule(self, pipe, steps, x0):
        from diffusers.pipelines.hidream_image.pipeline_hidream_image import calculate_shift

        pipe.scheduler.set_timesteps(steps, mu=calculate_shift(pipe.transformer.max_seq))

    def head_layout(self, denoiser):
        """Heads of both streams' projections: queries, keys and values by output rows, outputs by input columns."""
        layout = {}
        for name, module in denoiser.named_modules():
            if not hasattr(module, "to_q") or not isinstance(getattr(module, "heads", None), int):
                continue
            for part, axis in (("to_q", 0), ("to_k", 0), ("to_v", 0), ("to_out", 1), ("to_q_t", 0), ("to_k_t", 0),
                               ("to_v_t", 0), ("to_out_t", 1)):
                weight = getattr(getattr(module, part, None), "weight", None)
                if weight is not None and weight.shape[axis] % module.heads == 0:
                    layout[f"{name}.{part}.weight"] = [name, axis, module.heads]
        return layout

    def hookpoints(self, denoiser):
        return [f"double_stream_blocks.{i}" for i in range(len(denoiser.double_stream_blocks))]

    def token_grid(self, denoiser, args, kwargs):
        latent = kwargs.get("hidden_states", args[0] if args else None)
        patch = int(denoiser.config.patch_size)
        return latent.shape[-2] // patch, latent.shape[-1] // patch

    def _image_stream(self, output):
        return output[0]  # a double block returns (image stream, text stream)

    def with_block_tokens(self, args, kwargs, output, tokens, grid):
        return (tokens, output[1])
