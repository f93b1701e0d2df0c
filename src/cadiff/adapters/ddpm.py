"""The DDPM-family side of adapters (U-Nets, PixArt): the scheduler math — outputs in epsilon, v or sample units, put in
epsilon units; clean latents noised along the model's alphas — and the component groups of their shared block layout."""

from __future__ import annotations

import math

import torch

from cadiff.errors import BadInput


def _abar(scheduler, timestep: torch.Tensor) -> float:
    if not hasattr(scheduler, "alphas_cumprod"):
        raise BadInput(f"{type(scheduler).__name__} has no alphas_cumprod; this denoiser needs a DDPM-family scheduler")
    return float(scheduler.alphas_cumprod[int(round(float(timestep.reshape(-1)[0])))])


def _prediction_type(scheduler) -> str:
    kind = scheduler.config.prediction_type
    if kind not in ("epsilon", "v_prediction", "sample"):
        raise BadInput(f"unsupported prediction_type '{kind}' (epsilon, v_prediction or sample)")
    return kind


class BasicBlockGroups:
    """Component groups of diffusers' `BasicTransformerBlock` (U-Nets' and PixArt's blocks): attn1 self-, attn2
    cross-attention, ff."""

    block = r"\.transformer_blocks\."
    ff = r"ff\.net\.(0\.proj|2)\.weight$"
    attn = r"\.attn[12]\."
    cross_attention = r"\.attn2\."
    text_input = r"\.attn2\.to_[kv]\.weight$"


class DDPMSchedule:
    """Adapter part for denoisers on a DDPM-family schedule (alphas_cumprod, a prediction_type)."""

    def output_scale(self, scheduler, timestep):
        kind = _prediction_type(scheduler)
        if kind == "epsilon":
            return 1.0
        abar = _abar(scheduler, timestep)
        return math.sqrt(abar) if kind == "v_prediction" else math.sqrt(abar / (1.0 - abar))

    def noised(self, scheduler, x0, noise, index):
        kind = _prediction_type(scheduler)
        abar = _abar(scheduler, scheduler.timesteps[index])
        a, s = math.sqrt(abar), math.sqrt(1.0 - abar)
        target = {"epsilon": noise, "v_prediction": a * noise - s * x0, "sample": x0}[kind]
        return a * x0 + s * noise, target

    def model_input(self, scheduler, latents, timestep):
        return scheduler.scale_model_input(latents, timestep)
