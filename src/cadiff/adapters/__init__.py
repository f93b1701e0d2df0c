"""Denoiser adapters: the one place that knows a family of denoisers — U-Nets (SD 1.x/2.x/SDXL, the embedded
model), the SD3 MMDiT, Flux, PixArt — how its pipeline is called (the prompt and guidance keywords), how a sampling
step lays out its denoiser calls (`Layout`), how to call the denoiser, the units its output is
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

import contextlib
import inspect
import re
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from cadiff.errors import BadInput
from cadiff.registry import Registry

GROUPS = ("ff", "attn", "text", "linear", "all")


@dataclass(frozen=True)
class Layout:
    """How one sampling step calls the denoiser: `split` 'batch' (one call on the branches' rows stacked in
    `order`) or 'calls' (one call per branch, in `order`); `order` is ('cond',) without guidance."""

    split: str
    order: tuple[str, ...]

    @property
    def guided(self) -> bool:
        return len(self.order) > 1


class Rows(list):
    """A batch held as a list, one entry per row (Z-Image's latents and captions of different lengths): the trace
    slices and repeats it by row, never entry by entry."""


def call_default(pipe, keyword: str) -> Any:
    """The default of one of the pipeline call's keywords, as its class (or the nearest that names it) declares."""
    for cls in type(pipe).__mro__:
        call = vars(cls).get("__call__")
        if call is not None:
            parameter = inspect.signature(call).parameters.get(keyword)
            if parameter is not None and parameter.default is not inspect.Parameter.empty:
                return parameter.default
    raise BadInput(f"{type(pipe).__name__}'s call has no default {keyword}")


@dataclass(frozen=True)
class Part:
    """A named slice of a fused weight that belongs to one component group: rows (`axis` 0) or columns (`axis` 1)
    [start, stop); `heads`: (attention module, heads) when the slice splits into that module's heads along `axis`."""

    label: str
    group: str
    axis: int
    start: int
    stop: int
    heads: tuple[str, int] | None = None

    def key(self, name: str) -> str:
        """The name its scores go by: '<parameter>#<label>'."""
        return f"{name}#{self.label}"


UNGUIDED = Layout("calls", ("cond",))
UNCOND_FIRST_BATCH = Layout("batch", ("uncond", "cond"))     # diffusers' classifier-free guidance (SD, SD3, PixArt)
COND_FIRST_CALLS = Layout("calls", ("cond", "uncond"))       # true CFG: a second denoiser call per step
COND_FIRST_BATCH = Layout("batch", ("cond", "uncond"))       # Z-Image


class DenoiserAdapter:
    """What cadiff needs to know of one denoiser family."""

    name: ClassVar[str]
    denoisers: ClassVar[tuple[str, ...]]   # class names of the denoisers it serves (diffusers' own classes)
    latent_arg: ClassVar[str]              # the keyword the denoiser takes the noisy latent as
    timestep_arg: ClassVar[str] = "timestep"  # ... and the timestep as
    block: ClassVar[str]                   # regex: parameter-name part of the blocks (the components' home)
    ff: ClassVar[str]                      # regex: feed-forward weights of those blocks
    attn: ClassVar[str]                    # regex: attention weights of those blocks
    cross_attention: ClassVar[str]         # regex: the weights that read the text (ESD-x trains these)
    text_input: ClassVar[str]              # regex: the weights the text embedding is the input of (keys, values)
    esd_frozen: ClassVar[str]              # regex: output layers and time embedding (ESD-u leaves these)
    ff_out: ClassVar[str] = "ff.net.2"     # name suffix of the feed-forward output projections (prune scores these)
    checkpointing_differs: ClassVar[str] = ""  # why diffusers' checkpointed forward is another computation, if it is

    # How the pipeline is called and how its steps call the denoiser
    def call_kwargs(self, pipe, prompts: list[str], guidance: float) -> dict[str, Any]:
        """The pipeline keywords that sample `prompts` at cadiff's guidance `guidance`, as the family's stock call
        does (classifier-free guidance: `guidance_scale`)."""
        return {"prompt": prompts, "guidance_scale": guidance}

    def call_context(self, pipe, guidance: float):
        """A context the pipeline call runs in, for families whose guidance is set on the pipeline rather than
        passed to its call (HunyuanImage's guider); none for most."""
        return contextlib.nullcontext()

    guided_layout: ClassVar[Layout] = UNCOND_FIRST_BATCH  # a step's calls when the family guides by branches

    def guidance_input(self, pipe) -> bool:
        """Whether this model takes the guidance as an input (a guidance embedding: Flux-dev, LCM-style U-Nets)
        rather than by an unconditional branch."""
        return False

    def layout(self, pipe, guidance: float | None) -> Layout:
        """The denoiser calls of one step at `guidance` (None: a pipeline called directly): `guided_layout` when
        guidance is on (above 1), one call when it is off or an input of the model."""
        if self.guidance_input(pipe):
            return UNGUIDED
        if guidance is None:
            if self.guided_layout.split == "calls":
                return self.guided_layout  # a second call at a step is the unconditional one
            guided = getattr(pipe, "do_classifier_free_guidance", None)  # the pipeline's own state
            guided = bool(guided) if guided is not None else getattr(pipe, "_guidance_scale", 1.0) > 1.0
        else:
            guided = guidance > 1.0
        return self.guided_layout if guided else UNGUIDED

    def unguided(self, pipe, guidance: float | None) -> float:
        """The guidance at which the pipeline calls only the conditional branch but builds the same conditional
        inputs as at `guidance`: 1.0, or `guidance` itself where it is an input of the model."""
        return guidance if self.guidance_input(pipe) and guidance is not None else 1.0

    def bind_call(self, denoiser: torch.nn.Module, args: tuple, kwargs: dict) -> tuple[Any, Any, dict[str, Any]]:
        """A denoiser call's (latent, timestep, conditioning keywords), positional arguments bound by name."""
        call = dict(inspect.signature(denoiser.forward).bind_partial(*args, **kwargs).arguments)
        call.pop("return_dict", None)
        return call.pop(self.latent_arg), call.pop(self.timestep_arg), call

    def batch_size(self, latent) -> int:
        """The rows of a denoiser input."""
        return latent.shape[0]

    def output_of(self, output) -> torch.Tensor:
        """The prediction tensor of a raw denoiser output (a tuple, or an output dataclass)."""
        return output[0] if isinstance(output, (tuple, list)) else output.sample

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

    def parts(self, denoiser: torch.nn.Module) -> dict[str, tuple[Part, ...]]:
        """Fused weights by parameter name, as the named slices that belong to groups (Flux's single blocks fuse the
        attention and MLP outputs in one projection); none for most families. A fused weight is in the 'linear'
        group whole and in 'ff' / 'attn' by its parts."""
        return {}

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

    prompt_keys: ClassVar[tuple[str, ...]] = ()  # the call's inputs a prompt sets; () for all of them

    def base_kwargs(self, call_kwargs: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
        """The conditioning of the erase objective's base prompt for a call made with `call_kwargs`: `base` as
        captured, or, where the family says which inputs a prompt sets (`prompt_keys`), the call's own with only
        those replaced (its guidance input, per-step inputs and token ids stay the call's)."""
        if not self.prompt_keys:
            return base
        return {**call_kwargs, **{k: base[k] for k in self.prompt_keys if k in base}}

    def unbatched(self) -> tuple[str, ...]:
        """Keyword arguments that hold no batch dimension (Flux's token ids), never cut into rows."""
        return ()

    def image_size(self, pipe, denoiser: torch.nn.Module) -> int:
        """The side in pixels of the pipeline's default image: its default sample size (the denoiser's, where the
        pipeline keeps none) times its VAE's scale."""
        size = getattr(pipe, "default_sample_size", None) or denoiser.config.sample_size
        return int(size) * int(getattr(pipe, "vae_scale_factor", 8))

    def from_vae(self, latents: torch.Tensor) -> torch.Tensor:
        """VAE latents (N, C, H, W), scaled, in the layout the denoiser samples in (Flux: packed 2 x 2 tokens)."""
        return latents

    def sampled_latents(self, pipe, latents: torch.Tensor) -> torch.Tensor:
        """The pipeline's `output_type='latent'` output in the denoiser's layout (most pipelines: as it is)."""
        return latents

    def encode_images(self, pipe, images: torch.Tensor) -> torch.Tensor:
        """Images (N, 3, H, W) in [0, 1] as latents in the denoiser's layout, the inverse of the pipeline's
        decoding: pixels to [-1, 1], the posterior mean (or a deterministic autoencoder's latent, Sana's DC-AE),
        (z - shift) * scale, then `from_vae`."""
        vae = pipe.vae
        x = (images * 2.0 - 1.0).to(device=vae.device, dtype=vae.dtype)
        with torch.no_grad():
            encoded = vae.encode(x)
            z = encoded.latent_dist.mean if hasattr(encoded, "latent_dist") else encoded.latent
        shift = getattr(vae.config, "shift_factor", None) or 0.0
        return self.from_vae((z - shift) * vae.config.scaling_factor)

    def set_schedule(self, pipe, steps: int, x0: torch.Tensor) -> None:
        """Set the scheduler's sampling schedule of `steps` steps as the pipeline would for latents like `x0`."""
        pipe.scheduler.set_timesteps(steps)

    def head_layout(self, denoiser: torch.nn.Module) -> dict[str, list]:
        """Attention heads by weight: {parameter: [attention module, axis, heads]}: the query, key and value
        projections (and the text stream's add_q/k/v_proj) split their output rows by head (axis 0), the output
        projections (`to_out.0`, `to_add_out`) their input columns (axis 1). Keys and values shared by several
        query heads (grouped-query attention) belong to no one head and are left out."""
        layout = {}
        for name, module in denoiser.named_modules():
            heads = getattr(module, "heads", None)
            if not isinstance(heads, int) or not hasattr(module, "to_q"):
                continue
            width = module.to_q.weight.shape[0]  # heads x head_dim
            for part, axis in (("to_q", 0), ("to_k", 0), ("to_v", 0), ("add_q_proj", 0), ("add_k_proj", 0),
                               ("add_v_proj", 0), ("to_out.0", 1), ("to_add_out", 1)):
                try:
                    weight = module.get_submodule(part).weight
                except AttributeError:
                    continue
                if weight.shape[axis] == width and width % heads == 0:
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

    def with_block_tokens(self, args: tuple, kwargs: dict, output, tokens: torch.Tensor, grid: tuple[int, int]):
        """The block call's output with its image tokens replaced by `tokens` (B, P, C), its return type kept."""
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
PROBED: dict[type, DenoiserAdapter] = {}  # denoiser class -> the generic adapter probed from its pipeline


class UnknownDenoiser(BadInput):
    """No family adapter serves this denoiser, and none was probed for it."""


def adapter_for(denoiser: torch.nn.Module) -> DenoiserAdapter:
    """The adapter of a denoiser's family (or the generic one probed for its class); UnknownDenoiser naming its
    class and the supported ones otherwise."""
    names = {cls.__name__ for cls in type(denoiser).__mro__}
    for cls in ADAPTERS.values():
        if names & set(cls.denoisers):
            return cls()
    probed = next((PROBED[cls] for cls in type(denoiser).__mro__ if cls in PROBED), None)
    if probed is not None:  # a probed class, or a subclass of one (FSDP2's sharded wrapper)
        return probed
    supported = ", ".join(f"{n} ({a.name})" for a in ADAPTERS.values() for n in a.denoisers)
    raise UnknownDenoiser(f"cadiff does not support the {type(denoiser).__name__} denoiser yet; supported: "
                          f"{supported}; attribute and erase --method cad probe any other pipeline's own calls")


def adapt(pipe, denoiser: torch.nn.Module, prompt: str, base_prompt: str = "") -> DenoiserAdapter:
    """The adapter of `pipe`'s denoiser: its family's, else the generic one, probed from the pipeline's own calls
    on `prompt` and `base_prompt` (once per denoiser class) and checked before it is used."""
    try:
        return adapter_for(denoiser)
    except UnknownDenoiser:
        from cadiff.adapters.generic import probe

        PROBED[type(denoiser)] = probe(pipe, denoiser, prompt, base_prompt)
        return PROBED[type(denoiser)]


# the built-in families register themselves, U-Nets first
from cadiff.adapters import unet  # noqa: E402,F401,I001
from cadiff.adapters import pixart  # noqa: E402,F401,I001
from cadiff.adapters import sd3  # noqa: E402,F401,I001
from cadiff.adapters import flux  # noqa: E402,F401,I001
from cadiff.adapters import sana  # noqa: E402,F401,I001
from cadiff.adapters import qwenimage  # noqa: E402,F401,I001
from cadiff.adapters import chroma  # noqa: E402,F401,I001
from cadiff.adapters import flux2  # noqa: E402,F401,I001
from cadiff.adapters import zimage  # noqa: E402,F401,I001
from cadiff.adapters import lumina2  # noqa: E402,F401,I001
from cadiff.adapters import cogview4  # noqa: E402,F401,I001
from cadiff.adapters import hunyuanimage  # noqa: E402,F401,I001
from cadiff.adapters import hidream  # noqa: E402,F401
