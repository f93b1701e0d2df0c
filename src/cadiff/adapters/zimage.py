"""Z-Image denoisers (`ZImageTransformer2DModel`): a single-stream DiT on flow matching whose call takes Python
lists — one (C, 1, H, W) latent and one caption of its own length per row — a reversed timestep (1 - sigma, 0 is
pure noise) and positional arguments; it returns a list too, and the pipeline negates it into the scheduler's
velocity. Guided by one call on the doubled list, the conditional rows first, when `guidance_scale > 0`: the
pipeline's guidance is pos + g (pos - neg), so cadiff's guidance is passed as that g (the classical scale is
g + 1). The trace sees the latents stacked into (B, C, H, W) and the captions as `Rows`.

Components: the noise refiner's, context refiner's and main `layers`' attention (`attention.to_q/k/v`,
`to_out.0`) and SwiGLU feed-forwards (`feed_forward.w1/w2/w3`); the context refiner reads only the caption, so
its keys and values are the 'text' group and its attention is what ESD-x trains. An SAE reads the main layers' image
tokens, which lead their joint sequence."""

from __future__ import annotations

import torch

from cadiff.adapters import COND_FIRST_BATCH, UNGUIDED, Rows, call_default, register_adapter
from cadiff.adapters.flux import shifted_schedule
from cadiff.adapters.sd3 import SD3Adapter


@register_adapter
class ZImageAdapter(SD3Adapter):
    name = "zimage"
    denoisers = ("ZImageTransformer2DModel",)
    latent_arg = "x"
    timestep_arg = "t"
    block = r"\.(noise_refiner|context_refiner|layers)\.\d+\."
    ff = r"\.feed_forward\.w[123]\.weight$"
    attn = r"\.attention\."
    cross_attention = r"^context_refiner\.\d+\.attention\."
    text_input = r"^context_refiner\.\d+\.attention\.to_[kv]\.weight$"
    ff_out = "feed_forward.w2"
    esd_frozen = r"^(all_final_layer|all_x_embedder|t_embedder|cap_embedder|x_pad_token|cap_pad_token)"

    def layout(self, pipe, guidance):
        if guidance is None:  # called directly: the pipeline says
            return COND_FIRST_BATCH if getattr(pipe, "do_classifier_free_guidance", False) else UNGUIDED
        return COND_FIRST_BATCH if guidance > 0 else UNGUIDED

    def unguided(self, pipe, guidance):
        return 0.0

    def model_timestep(self, timestep):
        return (1000 - timestep) / 1000

    def bind_call(self, denoiser, args, kwargs):
        latent, timestep, call = super().bind_call(denoiser, args, kwargs)
        call["cap_feats"] = Rows(call["cap_feats"])
        return torch.stack(list(latent)).squeeze(2), timestep, call

    def forward(self, denoiser, latent, timestep, kwargs):
        if timestep.ndim == 0:
            timestep = timestep.expand(latent.shape[0])
        call = {**kwargs, "cap_feats": list(kwargs["cap_feats"])}
        out = denoiser(list(latent.unsqueeze(2).unbind(0)), timestep, **call, return_dict=False)
        return self.prediction(denoiser, self.output_of(out))

    def output_of(self, output):
        return torch.stack(list(output[0])).squeeze(2)

    def prediction(self, denoiser, output):
        return -output  # the scheduler's velocity, noise - x0, as the pipeline turns it

    def image_size(self, pipe, denoiser):
        return int(call_default(pipe, "height"))

    def set_schedule(self, pipe, steps, x0):
        shifted_schedule(pipe, steps, (x0.shape[-2] // 2) * (x0.shape[-1] // 2),
                         sigmas=torch.linspace(1.0, 1 / steps, steps).tolist())

    def hookpoints(self, denoiser):
        return [f"layers.{i}" for i in range(len(denoiser.layers))]

    def token_grid(self, denoiser, args, kwargs):
        latents = args[0] if args else kwargs.get("x")
        patch = int(kwargs.get("patch_size", 2))
        return latents[0].shape[-2] // patch, latents[0].shape[-1] // patch

    def block_tokens(self, args, kwargs, output, grid=None):
        """A main layer's joint sequence leads with the image tokens (then their padding, then the caption)."""
        count = grid[0] * grid[1]
        inp = args[0] if args else kwargs["x"]
        return inp[:, :count], output[:, :count], grid

    def with_block_tokens(self, args, kwargs, output, tokens, grid):
        return torch.cat([tokens, output[:, tokens.shape[1]:]], dim=1)

    def _image_stream(self, output):
        return output
