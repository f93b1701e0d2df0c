"""The (z_t, t, conditioning, target) samples each CAD objective is evaluated on, built through the stock pipeline.

- `erase_trajectory`: each trajectory sampled ONCE by the stock pipeline call; every denoiser call is recorded
  with its own timestep, and the unconditional half of the guided call is the stop-gradient target (base prompt
  "": no extra forward).
- `erase_restart`: the public reference estimator: for every step i, sample again up to step i and pair the
  latent with the timestep of the step just taken (O(T^2) guided calls). Kept for fidelity/speed comparisons.
- `amplify_samples`: concept latents x0 (generated, or given) noised at every sampling timestep; the target is
  the noise (epsilon models) or the velocity (v-prediction models).
Each builder takes `only`, the sampling-step indices whose terms are kept (None: every step; 0 = first step).

Example:
    >>> rows = [Row("a circle", seed, 0) for seed in range(4)]
    >>> steps = erase_trajectory(pipe, pipe.unet, rows, steps=25, guidance=4.0)   # doctest: +SKIP
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch

from cadiff.adapters import adapter_for
from cadiff.models.loading import denoiser as denoiser_of
from cadiff.attribution.recording import capture_conditioning, record_calls, repeat_rows


@dataclass(frozen=True)
class Row:
    """One sample of an objective: a prompt, the seed of its trajectory/noise, and its group (concept index)."""

    prompt: str
    seed: int
    group: int


@dataclass
class Step:
    """A batch of objective terms sharing one timestep: scale * ||denoiser(sample, t, **kwargs) - target||^2."""

    sample: torch.Tensor
    timestep: torch.Tensor
    kwargs: dict[str, Any]
    target: torch.Tensor
    scale: torch.Tensor          # (N,) factors putting the output difference in epsilon units
    groups: list[int]            # the group of every row


def _chunks(rows: Sequence[Row], size: int) -> list[list[Row]]:
    return [list(rows[i : i + size]) for i in range(0, len(rows), size)]


def _generators(rows: Sequence[Row]) -> list[torch.Generator]:
    """CPU generators, so a seed walks the same trajectory on any device (as `cadiff.generate` does)."""
    return [torch.Generator().manual_seed(int(r.seed)) for r in rows]


def _base_kwargs(pipe, denoiser, base_prompt: str, n: int) -> dict[str, Any]:
    return repeat_rows(capture_conditioning(pipe, denoiser, [base_prompt]), n)


@torch.no_grad()
def _forward(denoiser, sample, timestep, kwargs) -> torch.Tensor:
    return adapter_for(denoiser).forward(denoiser, sample, timestep, kwargs)


class _Stopped(Exception):
    """Raised from a legacy step callback to end a pipeline call early."""


def _takes_step_end_callback(pipe) -> bool:
    """Whether the pipeline's call has diffusers' `callback_on_step_end` (PixArt-α's has only the legacy one)."""
    return any("callback_on_step_end" in inspect.signature(cls.__call__).parameters
               for cls in type(pipe).__mro__ if "__call__" in vars(cls))


def _sample_until(pipe, last: int | None, state: dict[str, Any] | None = None, **call) -> None:
    """The stock pipeline call, ended after step `last` when given (through diffusers' documented `_interrupt` flag,
    or by stopping the legacy per-step callback), the latents reached then in `state["latents"]`."""
    if last is None:
        pipe(**call)
        return
    state = {} if state is None else state
    if _takes_step_end_callback(pipe):
        def on_step_end(p, index, t, kwargs):
            if index >= last:
                state["latents"] = kwargs["latents"].detach().clone()
                p._interrupt = True
            return {}

        pipe(**call, callback_on_step_end=on_step_end)
        return

    def legacy(index, t, latents):
        if index >= last:
            state["latents"] = latents.detach().clone()
            raise _Stopped

    try:
        pipe(**call, callback=legacy, callback_steps=1)
    except _Stopped:
        pass


@torch.no_grad()
def erase_trajectory(pipe, denoiser, rows: Sequence[Row], steps: int, guidance: float, base_prompt: str = "",
                     batch_size: int = 16, tick: Callable[[int], None] | None = None,
                     only: set[int] | None = None) -> list[Step]:
    """Erase-objective terms from one stock sampling run per chunk of rows, each z_t with its own timestep.

    With `only`, the run ends after the last step named (later latents are never needed)."""
    out: list[Step] = []
    for chunk in _chunks(rows, batch_size):
        n = len(chunk)
        with record_calls(denoiser, n, on_call=(lambda _c: tick(1)) if tick else None) as calls:
            _sample_until(pipe, None if only is None else max(only), prompt=[r.prompt for r in chunk],
                          num_inference_steps=steps, guidance_scale=guidance, generator=_generators(chunk),
                          output_type="latent")
        calls = [c for i, c in enumerate(calls) if only is None or i in only]
        reuse = base_prompt == "" and calls[0].uncond_output is not None
        base = None if reuse else _base_kwargs(pipe, denoiser, base_prompt, n)
        adapter = adapter_for(denoiser)
        for call in calls:
            target = call.uncond_output if reuse else _forward(denoiser, call.sample, call.timestep,
                                                               adapter.base_kwargs(call.kwargs, base))
            scale = torch.full((n,), adapter.output_scale(pipe.scheduler, call.timestep))
            out.append(Step(call.sample, call.timestep, call.kwargs, target, scale, [r.group for r in chunk]))
    return out


@torch.no_grad()
def erase_restart(pipe, denoiser, rows: Sequence[Row], steps: int, guidance: float, base_prompt: str = "",
                  batch_size: int = 16, tick: Callable[[int], None] | None = None,
                  pair_previous: bool = True, only: set[int] | None = None) -> list[Step]:
    """The reference estimator: for step i = 1..T sample again up to step i and evaluate the latent at the
    timestep of the step just taken (`pair_previous`, as the public code does). With pair_previous=False, the
    latents after i = 0..T-1 steps are paired with their own timesteps, i.e. exactly the trajectory's samples."""
    out: list[Step] = []
    for chunk in _chunks(rows, batch_size):
        n = len(chunk)
        for i in (range(1, steps + 1) if pair_previous else range(steps)):
            if only is not None and (i - 1 if pair_previous else i) not in only:
                continue  # the term's timestep is that of step i - 1 (pair_previous) or i
            state: dict[str, Any] = {}
            with record_calls(denoiser, n, on_call=(lambda _c: tick(1)) if tick else None) as calls:
                _sample_until(pipe, max(i - 1, 0), state, prompt=[r.prompt for r in chunk], num_inference_steps=steps,
                              guidance_scale=guidance, generator=_generators(chunk), output_type="latent")
            first, timesteps, adapter = calls[0], pipe.scheduler.timesteps, adapter_for(denoiser)
            if i == 0:  # the initial noise, as the first call saw it
                sample, timestep = first.sample, first.timestep
            else:
                scheduled = timesteps[i - 1] if pair_previous else timesteps[i]
                sample = adapter.model_input(pipe.scheduler, state["latents"], scheduled)
                timestep = adapter.model_timestep(scheduled)
            reuse = base_prompt == "" and first.uncond_kwargs is not None
            base = first.uncond_kwargs if reuse else _base_kwargs(pipe, denoiser, base_prompt, n)
            target = _forward(denoiser, sample, timestep, adapter.base_kwargs(first.kwargs, base))
            scale = torch.full((n,), adapter.output_scale(pipe.scheduler, timestep))
            out.append(Step(sample, timestep, first.kwargs, target, scale, [r.group for r in chunk]))
    return out


def image_latents(pipe, images: torch.Tensor) -> torch.Tensor:
    """VAE latents of images (N, 3, H, W) in [0, 1]: pixels to [-1, 1], the posterior mean (or a deterministic
    autoencoder's latent, Sana's DC-AE), (z - shift) * scale."""
    vae = pipe.vae
    x = (images * 2.0 - 1.0).to(device=vae.device, dtype=vae.dtype)
    with torch.no_grad():
        encoded = vae.encode(x)
        z = encoded.latent_dist.mean if hasattr(encoded, "latent_dist") else encoded.latent
    shift = getattr(vae.config, "shift_factor", None) or 0.0
    return adapter_for(denoiser_of(pipe)).from_vae((z - shift) * vae.config.scaling_factor)


@torch.no_grad()
def generated_latents(pipe, rows: Sequence[Row], steps: int, guidance: float, batch_size: int = 16,
                      tick: Callable[[int], None] | None = None) -> torch.Tensor:
    """Final latents x0 of the model's own samples for every row (stock pipeline call, output_type='latent')."""
    out = []
    for chunk in _chunks(rows, batch_size):
        result = pipe([r.prompt for r in chunk], num_inference_steps=steps, guidance_scale=guidance,
                      generator=_generators(chunk), output_type="latent")
        out.append(result.images)
        if tick:
            tick(len(chunk))
    return torch.cat(out)


@torch.no_grad()
def amplify_samples(pipe, denoiser, rows: Sequence[Row], x0: torch.Tensor, steps: int, batch_size: int = 16,
                    guidance: float | None = None,
                    tick: Callable[[int], None] | None = None, only: set[int] | None = None) -> list[Step]:
    """Denoising-loss terms on x0 at every sampling timestep, x0 noised as the denoiser's adapter says (U-Nets:
    z_t = sqrt(abar) x0 + sqrt(1-abar) noise; flow models: (1 - sigma) x0 + sigma noise)."""
    scheduler = pipe.scheduler
    adapter = adapter_for(denoiser)
    out: list[Step] = []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        n = len(chunk)
        cond = capture_conditioning(pipe, denoiser, [r.prompt for r in chunk], guidance)
        z0 = x0[start : start + n].to(denoiser.dtype)
        adapter.set_schedule(pipe, steps, z0)  # after the capture, which ran a one-step schedule
        timesteps = scheduler.timesteps
        gens = [torch.Generator().manual_seed(int(r.seed) * 100_003 + 17) for r in chunk]
        for i, t in enumerate(timesteps):
            noise = torch.stack([torch.randn(z0.shape[1:], generator=g) for g in gens]).to(z0)
            if only is not None and i not in only:
                continue  # the noise is still drawn, so a step's term does not depend on which others are kept
            sample, target = adapter.noised(scheduler, z0, noise, i)
            out.append(Step(sample, adapter.model_timestep(t.to(z0.device)), cond, target, torch.ones(n),
                            [r.group for r in chunk]))
            if tick:
                tick(1)
    return out
