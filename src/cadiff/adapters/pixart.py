"""PixArt-α / PixArt-Σ denoisers (`PixArtTransformer2DModel`): a DiT on a DDPM-family schedule, so the scheduler
math is the U-Nets' (`DDPMSchedule`); its blocks are named like theirs (attn1 self-, attn2 cross-attention, ff). With learned
variance the output carries twice the latent channels, and the sampler uses the first half (the noise)."""

from __future__ import annotations

from cadiff.adapters import DenoiserAdapter, register_adapter
from cadiff.adapters.ddpm import DDPMSchedule


@register_adapter
class PixArtAdapter(DDPMSchedule, DenoiserAdapter):
    name = "pixart"
    denoisers = ("PixArtTransformer2DModel",)
    latent_arg = "hidden_states"
    block = r"\.transformer_blocks\."
    ff = r"ff\.net\.(0\.proj|2)\.weight$"
    attn = r"\.attn[12]\."
    cross_attention = r"\.attn2\."
    esd_frozen = r"^(proj_out|adaln_single|scale_shift_table|caption_projection)"

    def prediction(self, denoiser, output):
        channels = denoiser.config.in_channels
        return output[:, :channels] if output.shape[1] == 2 * channels else output
