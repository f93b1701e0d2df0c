"""The (z_t, t, conditioning, target) samples each CAD objective is evaluated on, built through the stock pipeline.

- `erase_trajectory`: each trajectory sampled ONCE by the stock pipeline call; every step's denoiser input is
  recorded by the denoiser trace with its own timestep, and the unconditional branch's output (a half of a
  doubled batch, or a second call) is the stop-gradient target (base prompt "": no extra forward).
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

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch

from cadiff.adapters import adapter_for
from cadiff.models.loading import denoiser as denoiser_of
from cadiff.models.trace import DenoiserTrace, conditioning, generators, repeat_rows, sample


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
    return generators([r.seed for r in rows])


def _base_kwargs(pipe, denoiser, base_prompt: str, n: int) -> dict[str, Any]:
    return repeat_rows(conditioning(pipe, [base_prompt]), n)


@torch.no_grad()
def _forward(denoiser, sample, timestep, kwargs) -> torch.Tensor:
    return adapter_for(denoiser).forward(denoiser, sample, timestep, kwargs)


@torch.no_grad()
def erase_trajectory(pipe, denoiser, rows: Sequence[Row], steps: int, guidance: float, base_prompt: str = "",
                     batch_size: int = 16, tick: Callable[[int], None] | None = None,
                     only: set[int] | None = None) -> list[Step]:
    """Erase-objective terms from one stock sampling run per chunk of rows, each z_t with its own timestep.

    With `only`, the run ends after the last step named (later latents are never needed)."""
    out: list[Step] = []
    for chunk in _chunks(rows, batch_size):
        n = len(chunk)
        with DenoiserTrace(pipe, record=n, on_step=(lambda _s: tick(1)) if tick else None) as trace:
            sample(pipe, [r.prompt for r in chunk], _generators(chunk), steps, guidance,
                   until=None if only is None else max(only))
        calls = [c for c in trace.steps if only is None or c.index in only]
        base, adapter = None, adapter_for(denoiser)
        for call in calls:
            if base_prompt == "" and call.uncond_output is not None:
                target = call.uncond_output  # the step's own unconditional branch: no extra forward
            else:
                base = base if base is not None else _base_kwargs(pipe, denoiser, base_prompt, n)
                target = _forward(denoiser, call.sample, call.timestep, adapter.base_kwargs(call.kwargs, base))
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
            with DenoiserTrace(pipe, record=n, on_step=(lambda _s: tick(1)) if tick else None) as trace:
                latents = sample(pipe, [r.prompt for r in chunk], _generators(chunk), steps, guidance,
                                 until=max(i - 1, 0))
            first, timesteps, adapter = trace.steps[0], pipe.scheduler.timesteps, adapter_for(denoiser)
            if i == 0:  # the initial noise, as the first call saw it
                latent, timestep = first.sample, first.timestep
            else:
                scheduled = timesteps[i - 1] if pair_previous else timesteps[i]
                latent = adapter.model_input(pipe.scheduler, latents, scheduled).to(first.sample.dtype)
                timestep = adapter.model_timestep(scheduled)
            reuse = base_prompt == "" and first.uncond_kwargs is not None
            base = first.uncond_kwargs if reuse else _base_kwargs(pipe, denoiser, base_prompt, n)
            target = _forward(denoiser, latent, timestep, adapter.base_kwargs(first.kwargs, base))
            scale = torch.full((n,), adapter.output_scale(pipe.scheduler, timestep))
            out.append(Step(latent, timestep, first.kwargs, target, scale, [r.group for r in chunk]))
    return out


def image_latents(pipe, images: torch.Tensor) -> torch.Tensor:
    """Latents of images (N, 3, H, W) in [0, 1] in the denoiser's layout, as its adapter encodes them."""
    return adapter_for(denoiser_of(pipe)).encode_images(pipe, images)


@torch.no_grad()
def generated_latents(pipe, rows: Sequence[Row], steps: int, guidance: float, batch_size: int = 16,
                      tick: Callable[[int], None] | None = None) -> torch.Tensor:
    """Final latents x0 of the model's own samples for every row (stock pipeline call, output_type='latent')."""
    out = []
    for chunk in _chunks(rows, batch_size):
        latents = sample(pipe, [r.prompt for r in chunk], _generators(chunk), steps, guidance).images
        out.append(adapter_for(denoiser_of(pipe)).sampled_latents(pipe, latents))
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
        cond = conditioning(pipe, [r.prompt for r in chunk], guidance)
        z0 = x0[start : start + n].to(denoiser.dtype)
        adapter.set_schedule(pipe, steps, z0)  # after the capture, which ran a one-step schedule
        timesteps = scheduler.timesteps
        gens = [torch.Generator().manual_seed(int(r.seed) * 100_003 + 17) for r in chunk]
        for i, t in enumerate(timesteps):
            noise = torch.stack([torch.randn(z0.shape[1:], generator=g) for g in gens]).to(z0)
            if only is not None and i not in only:
                continue  # the noise is still drawn, so a step's term does not depend on which others are kept
            noisy, target = adapter.noised(scheduler, z0, noise, i)
            out.append(Step(noisy, adapter.model_timestep(t.to(z0.device)), cond, target, torch.ones(n),
                            [r.group for r in chunk]))
            if tick:
                tick(1)
    return out
