"""Denoiser adapters: the one place that knows a family of denoisers — U-Nets (SD 1.x/2.x/SDXL, the embedded
model), the SD3 MMDiT, Flux, PixArt — how to call it and how its pipeline batches guidance, the units its output is
in and the scheduler math behind them, how the amplify objective noises a clean latent for it, which of its weights
form the component groups and attention heads, which ESD trains, and which blocks an SAE reads (as image tokens).
Everything else asks the adapter of the denoiser at hand; a new family is one module here plus its
`@register_adapter`.

Example:
    >>> from cadiff.adapters import adapter_for
    >>> adapter_for(pipe.unet).name                                         # doctest: +SKIP
    'unet'
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

import torch

from cadiff.errors import BadInput
from cadiff.registry import Registry

GROUPS = ("ff", "attn", "text", "linear", "all")


class DenoiserAdapter:
    """What cadiff needs to know of one denoiser family."""

    name: ClassVar[str]
    denoisers: ClassVar[tuple[str, ...]]   # class names of the denoisers it serves (diffusers' own classes)
    latent_arg: ClassVar[str]              # the keyword the denoiser takes the noisy latent as
    block: ClassVar[str]                   # regex: parameter-name part of the blocks (the components' home)
    ff: ClassVar[str]                      # regex: feed-forward weights of those blocks
    attn: ClassVar[str]                    # regex: attention weights of those blocks
    cross_attention: ClassVar[str]         # regex: the weights that read the text (ESD-x trains these)
    text_input: ClassVar[str]              # regex: the weights the text embedding is the input of (keys, values)
    esd_frozen: ClassVar[str]              # regex: output layers and time embedding (ESD-u leaves these)

    def forward(self, denoiser: torch.nn.Module, latent: torch.Tensor, timestep: torch.Tensor,
                kwargs: dict[str, Any]) -> torch.Tensor:
        """The denoiser's prediction for `latent` at `timestep` with the conditioning `kwargs` as the pipeline
        passed them (a 0-d timestep is given one per row)."""
        if timestep.ndim == 0:
            timestep = timestep.expand(latent.shape[0])
        return self.prediction(denoiser, denoiser(**{self.latent_arg: latent}, timestep=timestep, **kwargs,
                                                  return_dict=False)[0])

    def prediction(self, denoiser: torch.nn.Module, output: torch.Tensor) -> torch.Tensor:
        """The part of a raw denoiser output the sampler uses (all of it, unless the family adds more)."""
        return output

    def in_group(self, name: str, param: torch.Tensor, group: str) -> bool:
        """Whether a parameter belongs to a component group ('ff', 'attn', 'text', 'linear', 'all')."""
        block_2d = re.search(self.block, f".{name}") is not None and param.ndim == 2
        if group == "ff":
            return block_2d and re.search(self.ff, name) is not None
        if group == "attn":
            return block_2d and re.search(self.attn, name) is not None
        if group == "text":
            return block_2d and re.search(self.text_input, name) is not None
        if group == "linear":
            return block_2d
        return group == "all"

    def output_scale(self, scheduler, timestep: torch.Tensor) -> float:
        """Factor s with which s * (out_c - out_u), at a fixed latent, is in the objective's units."""
        raise NotImplementedError

    def noised(self, scheduler, x0: torch.Tensor, noise: torch.Tensor, index: int) -> tuple[torch.Tensor,
                                                                                           torch.Tensor]:
        """The latent at step `index` of the schedule set by `scheduler.set_timesteps`, made from the clean
        latent `x0` and `noise`, and the prediction the denoiser should make there (amplify's target)."""
        raise NotImplementedError

    def model_input(self, scheduler, latents: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
        """The denoiser input the pipeline makes of `latents` at `timestep`."""
        return latents

    def model_timestep(self, timestep: torch.Tensor) -> torch.Tensor:
        """The timestep the pipeline passes its denoiser for the scheduler's `timestep` (Flux: divided by 1000)."""
        return timestep

    def base_kwargs(self, call_kwargs: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
        """The conditioning of the erase objective's base prompt for a call made with `call_kwargs`: `base` as
        captured, or (Flux) the call's own with only the prompt's part replaced."""
        return base

    def guided_batch(self, guidance: float) -> bool:
        """Whether the pipeline batches [unconditional, conditional] halves at this guidance (Flux-dev never does:
        its guidance is distilled into the model)."""
        return guidance > 1.0

    def unbatched(self) -> tuple[str, ...]:
        """Keyword arguments that hold no batch dimension (Flux's token ids), never cut into rows."""
        return ()

    def image_size(self, pipe, denoiser: torch.nn.Module) -> int:
        """The side in pixels of the pipeline's default image."""
        return int(denoiser.config.sample_size) * int(getattr(pipe, "vae_scale_factor", 8))

    def from_vae(self, latents: torch.Tensor) -> torch.Tensor:
        """VAE latents (N, C, H, W), scaled, in the layout the denoiser samples in (Flux: packed 2 x 2 tokens)."""
        return latents

    def set_schedule(self, pipe, steps: int, x0: torch.Tensor) -> None:
        """Set the scheduler's sampling schedule of `steps` steps as the pipeline would for latents like `x0`."""
        pipe.scheduler.set_timesteps(steps)

    def head_layout(self, denoiser: torch.nn.Module) -> dict[str, list]:
        """Attention heads by weight: {parameter: [attention module, axis, heads]}: the query, key and value
        projections (and the text stream's add_q/k/v_proj) split their output rows by head (axis 0), the output
        projections (`to_out.0`, `to_add_out`) their input columns (axis 1)."""
        layout = {}
        for name, module in denoiser.named_modules():
            heads = getattr(module, "heads", None)
            if not isinstance(heads, int) or not hasattr(module, "to_q"):
                continue
            for part, axis in (("to_q", 0), ("to_k", 0), ("to_v", 0), ("add_q_proj", 0), ("add_k_proj", 0),
                               ("add_v_proj", 0), ("to_out.0", 1), ("to_add_out", 1)):
                try:
                    weight = module.get_submodule(part).weight
                except AttributeError:
                    continue
                if weight.shape[axis] % heads == 0:
                    layout[f"{name}.{part}.weight"] = [name, axis, heads]
        return layout

    # SAE hookpoints: the blocks whose residual update is read and steered, as image tokens (B, P, C)
    def hookpoints(self, denoiser: torch.nn.Module) -> list[str]:
        """Module paths of the blocks an SAE can read, in execution order (`transformer_blocks.i` for DiTs)."""
        return [f"transformer_blocks.{i}" for i in range(len(denoiser.transformer_blocks))]

    def token_grid(self, denoiser: torch.nn.Module, args: tuple, kwargs: dict) -> tuple[int, int] | None:
        """The (H, W) grid of image tokens of a denoiser call (its latent, patched), or None where blocks know it."""
        latent = args[0] if args else kwargs.get(self.latent_arg)
        if latent is None or latent.ndim != 4:
            return None
        patch = int(getattr(denoiser.config, "patch_size", 1) or 1)
        return latent.shape[-2] // patch, latent.shape[-1] // patch

    def block_tokens(self, args: tuple, kwargs: dict, output, grid: tuple[int, int] | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int]]:
        """A block call's image tokens going in and coming out, (B, P, C) each, and their (H, W) grid (`grid`: the
        denoiser call's, from `token_grid`; a square one is assumed without it)."""
        inp = args[0] if args else kwargs["hidden_states"]
        out = self._image_stream(output)
        if grid is None or grid[0] * grid[1] != out.shape[1]:
            grid = _square_grid(out.shape[1])
        return inp, out, grid

    def with_block_tokens(self, output, tokens: torch.Tensor, grid: tuple[int, int]):
        """The block's output with its image tokens replaced by `tokens` (B, P, C), its return type kept."""
        return tokens

    def _image_stream(self, output) -> torch.Tensor:
        return output


def _square_grid(tokens: int) -> tuple[int, int]:
    side = int(round(tokens ** 0.5))
    if side * side != tokens:
        raise BadInput(f"{tokens} image tokens do not form a square grid, and the denoiser call did not say its "
                       "grid; read this model's blocks on square images")
    return side, side


ADAPTERS = Registry("denoiser family")
register_adapter = ADAPTERS.register


def adapter_for(denoiser: torch.nn.Module) -> DenoiserAdapter:
    """The adapter of a denoiser's family; ValueError naming its class and the supported ones otherwise."""
    names = {cls.__name__ for cls in type(denoiser).__mro__}
    for cls in ADAPTERS.values():
        if names & set(cls.denoisers):
            return cls()
    supported = ", ".join(f"{n} ({a.name})" for a in ADAPTERS.values() for n in a.denoisers)
    raise BadInput(f"cadiff does not support the {type(denoiser).__name__} denoiser yet; supported: {supported}")


# the built-in families register themselves, U-Nets first
from cadiff.adapters import unet  # noqa: E402,F401,I001
from cadiff.adapters import pixart  # noqa: E402,F401,I001
from cadiff.adapters import sd3  # noqa: E402,F401,I001
from cadiff.adapters import flux  # noqa: E402,F401,I001
from cadiff.adapters import sana  # noqa: E402,F401
