"""ESD, Erasing Concepts from Diffusion Models (Gandikota et al., ICCV 2023): fine-tune a copy of the denoiser so
that, for the concept prompt c, it predicts the frozen model's output guided *away* from c:

    eps_new(z_t, t, c)  <-  eps(z_t, t, "") - eta * (eps(z_t, t, c) - eps(z_t, t, ""))

z_t comes from sampling the model being trained with prompt c (guidance 3) for a random number of DDIM steps, as
the paper's code does (here through the stock pipeline call with the step's own timestep, and stopped early by
callback_on_step_end). ESD-u trains every parameter except cross-attention, the output convolution and the time
embedding (the paper's choice for objects and nudity); ESD-x trains only cross-attention (for styles). The same
target works for v-prediction models: v is affine in eps for a fixed z_t, so the guided combination carries over.

Example:
    >>> import cadiff
    >>> result = cadiff.erase(cadiff.load_pipeline(), "circle", method="esd", iterations=100, lr=3e-4)   # doctest: +SKIP
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from cadiff.editing.copies import with_denoiser
from cadiff.editing.methods import EditMethod, register_method
from cadiff.editing.result import EditResult
from cadiff.files.config import Config, option, positive_int
from cadiff.models.loading import denoiser

VARIANTS = ("u", "x")


@dataclass(frozen=True)
class ESDConfig(Config):
    """ESD settings; the defaults are the paper's (1,000 iterations, lr 1e-5, eta 1, start guidance 3)."""

    variant: str = option("u", "ESD variant: u trains all but cross-attention, output conv and time embedding "
                               "(objects, nudity; default), x only cross-attention (styles)", choices=VARIANTS)
    iterations: int = option(1000, "ESD fine-tuning iterations (default 1000, the paper's)", type=positive_int)
    lr: float = option(1e-5, "ESD learning rate (default 1e-5, the paper's)", type=float)
    negative_guidance: float = option(1.0, "ESD's eta: how far the target is guided away from the concept "
                                           "(default 1)", type=float)
    start_guidance: float = option(3.0, "ESD: guidance of the sampling that reaches z_t (default 3)", type=float)
    steps: int | None = option(None, "sampling steps (default: the model's)", type=positive_int)

    def __post_init__(self):
        if self.variant not in VARIANTS:
            raise ValueError(f"unknown ESD variant '{self.variant}'; use 'u' (objects, nudity) or 'x' (styles)")
        if self.iterations < 1 or self.lr <= 0:
            raise ValueError("ESD needs iterations >= 1 and lr > 0")


def esd_parameter_names(unet: torch.nn.Module, variant: str) -> list[str]:
    """Names of the parameters ESD-x ('x': cross-attention, attn2) or ESD-u ('u': the rest) fine-tunes."""
    if variant not in ("u", "x"):
        raise ValueError(f"unknown ESD variant '{variant}'; use 'u' (objects, nudity) or 'x' (styles)")
    names = []
    for name, _ in unet.named_parameters():
        cross = "attn2" in name
        excluded = name.startswith(("conv_out.", "conv_norm_out.", "time_embedding.")) or cross
        if (variant == "x" and cross) or (variant == "u" and not excluded):
            names.append(name)
    return names


class _Reached(Exception):
    """Raised from the step callback once the wanted latent is recorded: the rest of sampling is skipped."""


def _latent_at(pipe, embeds: torch.Tensor, negative: torch.Tensor, noise: torch.Tensor, k: int, steps: int,
               guidance: float):
    """The latent after k guided DDIM steps from `noise`, and the timestep it belongs to (stock pipeline call)."""
    seen: dict[str, Any] = {}

    def stop(p, i, t, kwargs):
        if i + 1 == k:
            seen["latents"] = kwargs["latents"].detach().clone()
            raise _Reached
        return {}

    if k > 0:
        try:
            pipe(prompt_embeds=embeds, negative_prompt_embeds=negative, latents=noise.clone(),
                 num_inference_steps=steps, guidance_scale=guidance, output_type="latent",
                 callback_on_step_end=stop, callback_on_step_end_tensor_inputs=["latents"])
        except _Reached:
            pass
    else:
        pipe.scheduler.set_timesteps(steps, device=noise.device)
        seen["latents"] = noise * pipe.scheduler.init_noise_sigma
    return seen["latents"], pipe.scheduler.timesteps[k]


def esd(pipe, concept: str, config: ESDConfig | None = None, seed: int = 0,
        on_iteration: Callable[[int, Any], None] | None = None) -> tuple[Any, dict[str, Any]]:
    """Fine-tune a copy of `pipe`'s UNet with ESD to erase `concept`; return (new pipeline, info); `pipe` is kept.
    `on_iteration(i, edited)` is called after each iteration i = 1, 2, ... (e.g. to evaluate checkpoints)."""
    from cadiff.attribution.concepts import check_known_words, concept_prompts
    from cadiff.models.loading import sampling_defaults

    config = config or ESDConfig()
    net = denoiser(pipe)
    if type(net).__name__ != "UNet2DConditionModel" or getattr(net.config, "addition_embed_type", None):
        has = ("an SDXL-like U-Net (added conditioning)" if type(net).__name__ == "UNet2DConditionModel"
               else f"a {type(net).__name__}")
        raise ValueError(f"the ESD baseline supports SD 1.x / 2.x pipelines (a U-Net without added conditioning); "
                         f"this {type(pipe).__name__} has {has}")
    [prompt], _ = concept_prompts(pipe, [concept], base_prompt="")  # ESD guides away from the empty prompt
    check_known_words(pipe, [prompt])
    steps = config.steps or sampling_defaults(pipe)["num_inference_steps"]
    frozen = pipe.unet.eval().requires_grad_(False)
    student = copy.deepcopy(frozen)
    names = set(esd_parameter_names(student, config.variant))
    trained = [p.requires_grad_(name in names) for name, p in student.named_parameters()]
    params = [p for p in trained if p.requires_grad]
    edited = with_denoiser(pipe, student)

    device = pipe.device
    generator = torch.Generator("cpu").manual_seed(seed)
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        cond, _ = pipe.encode_prompt(prompt, device, 1, False)
        empty, _ = pipe.encode_prompt("", device, 1, False)
    size = student.config.sample_size
    optimizer = torch.optim.Adam(params, lr=config.lr)
    losses = []
    started = time.perf_counter()
    for _ in tqdm(range(config.iterations), desc=f"ESD-{config.variant} '{concept}'", unit="it", leave=False):
        noise = torch.randn((1, student.config.in_channels, size, size), generator=generator).to(device, frozen.dtype)
        k = int(rng.integers(0, steps))
        student.eval()
        with torch.no_grad():
            z, t = _latent_at(edited, cond, empty, noise, k, steps, config.start_guidance)
            e_empty = frozen(z, t, encoder_hidden_states=empty).sample
            e_concept = frozen(z, t, encoder_hidden_states=cond).sample
            target = e_empty - config.negative_guidance * (e_concept - e_empty)
        student.train()
        loss = torch.nn.functional.mse_loss(student(z, t, encoder_hidden_states=cond).sample.float(), target.float())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.detach().item())
        if on_iteration is not None:
            student.eval()
            on_iteration(len(losses), edited)
    student.eval().requires_grad_(False)
    info = {"method": f"esd-{config.variant}", "concept": concept, "prompt": prompt, "seed": seed, **asdict(config),
            "steps": steps, "trained_parameters": sorted(names),
            "trained_elements": int(sum(p.numel() for p in params)),
            "loss_first": round(float(np.mean(losses[:10])), 6) if losses else None,
            "loss_last": round(float(np.mean(losses[-10:])), 6) if losses else None,
            "seconds": round(time.perf_counter() - started, 3)}
    return edited, info


@register_method
class ESD(EditMethod):
    name = "esd"
    summary = "ESD (Gandikota et al. 2023): fine-tune the denoiser away from the concept (baseline)"
    config_class = ESDConfig
    takes_preserve = False
    concepts_at_once = 1

    def run(self, pipe, concepts, *, objective, preserve, progress=True, images=None, seed=0, on_round=None):
        edited, info = esd(pipe, concepts[0], self.config, seed=seed)
        return EditResult(edited, self.name, objective, list(concepts), [], self.config, info=info,
                          seconds=info["seconds"])
