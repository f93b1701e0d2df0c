"""PixArt-α / PixArt-Σ denoisers (`PixArtTransformer2DModel`): a DiT on a DDPM-family schedule, so the scheduler
math is the U-Nets' (`DDPMSchedule`) and its blocks are named like theirs (`BasicBlockGroups`). With learned
variance the output carries twice the latent channels, and the sampler uses the first half (the noise)."""

from __future__ import annotations

from cadiff.adapters import DenoiserAdapter, register_adapter
from cadiff.adapters.ddpm import BasicBlockGroups, DDPMSchedule


@register_adapter
class PixArtAdapter(BasicBlockGroups, DDPMSchedule, DenoiserAdapter):
    name = "pixart"
    denoisers = ("PixArtTransformer2DModel",)
    latent_arg = "hidden_states"
    esd_frozen = r"^(proj_out|adaln_single|scale_shift_table|caption_projection)"

    def prediction(self, denoiser, output):
        channels = denoiser.config.in_channels
        return output[:, :channels] if output.shape[1] == 2 * channels else output
