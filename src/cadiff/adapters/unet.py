"""U-Net denoisers (SD 1.x, 2.x, SDXL and the embedded shapes model): DDPM-family schedulers, outputs in epsilon,
v or sample units converted to epsilon; components live in the U-Net's transformer blocks (attn1 self-, attn2
cross-attention, ff)."""

from __future__ import annotations

from cadiff.adapters import DenoiserAdapter, register_adapter
from cadiff.adapters.ddpm import BasicBlockGroups, DDPMSchedule


@register_adapter
class UNetAdapter(BasicBlockGroups, DDPMSchedule, DenoiserAdapter):
    name = "unet"
    denoisers = ("UNet2DConditionModel",)
    latent_arg = "sample"
    esd_frozen = r"^(conv_out|conv_norm_out|time_embedding)\."

    def guidance_input(self, pipe):
        """A U-Net with a guidance embedding (LCM-style, `time_cond_proj_dim`): its pipeline never doubles the batch."""
        return getattr(pipe.unet.config, "time_cond_proj_dim", None) is not None

    def hookpoints(self, denoiser):
        """The U-Net's cross-attention transformer modules (`Transformer2DModel`), down, mid, then up blocks."""
        from diffusers.models.transformers.transformer_2d import Transformer2DModel

        names = [name for name, module in denoiser.named_modules() if isinstance(module, Transformer2DModel)]
        order = {"down_blocks": 0, "mid_block": 1, "up_blocks": 2}
        return sorted(names, key=lambda n: (order.get(n.split(".")[0], 3), names.index(n)))

    def token_grid(self, denoiser, args, kwargs):
        return None  # each U-Net block has its own resolution, read off its (B, C, H, W) tensors

    def block_tokens(self, args, kwargs, output, grid=None):
        inp = args[0] if args else kwargs["hidden_states"]
        out = output[0] if isinstance(output, tuple) else getattr(output, "sample", output)
        grid = (out.shape[-2], out.shape[-1])
        return inp.flatten(2).transpose(1, 2), out.flatten(2).transpose(1, 2), grid  # (B, C, H, W) -> (B, HW, C)

    def with_block_tokens(self, args, kwargs, output, tokens, grid):
        b, _, c = tokens.shape
        new = tokens.transpose(1, 2).reshape(b, c, *grid)
        if isinstance(output, tuple):
            return (new, *output[1:])
        if hasattr(output, "sample"):
            output.sample = new
            return output
        return new
