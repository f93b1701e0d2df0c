"""Concepts over time with sparse autoencoders: capture hookpoint activations per sampling step, train TopK SAEs,
name their latents against the shapes world's masks, measure early composition, and steer through concept vectors.

Example:
    >>> import cadiff
    >>> pipe = cadiff.load_pipeline()
    >>> store = cadiff.collect_activations(pipe, prompts, seeds, "runs/acts", hookpoints=["mid_block.attentions.0"])  # doctest: +SKIP
    >>> sae, metrics = cadiff.train_sae(store, "mid_block.attentions.0", "cond", at_steps=[0])            # doctest: +SKIP
    >>> with cadiff.steer(pipe, sae, latents=[3], mode="global", beta=8, at_steps="middle"):               # doctest: +SKIP
    ...     images = cadiff.generate(pipe, ["a red circle"], seeds=[0])
"""

from cadiff.sae.capture import ActivationCapture
from cadiff.sae.collect import CaptureConfig, collect_activations
from cadiff.sae.hookpoints import WINDOWS, hookpoints, resolve_hookpoint, resolve_steps, step_time, window_steps
from cadiff.sae.model import TopKSAE
from cadiff.sae.steering import SteerConfig, quadrant_region, steer, steer_update
from cadiff.sae.store import ActivationStore
from cadiff.sae.train import SAETrainConfig, evaluate_sae, geometric_median, train_sae

__all__ = [
    "WINDOWS", "ActivationCapture", "ActivationStore", "CaptureConfig", "SAETrainConfig", "SteerConfig", "TopKSAE",
    "collect_activations", "evaluate_sae", "geometric_median", "hookpoints", "quadrant_region", "resolve_hookpoint", "resolve_steps", "steer",
    "steer_update", "step_time", "train_sae", "window_steps",
]
