"""ConceptPrune-style training-free pruning (after Chavhan et al., 2024): zero the feed-forward weights that are
'skilled' for the concept. No gradient: the score of weight W_ij at a timestep is the Wanda score
|W_ij| * ||x_j|| (x_j: input j of the FFN output layer, norm over positions and sampled images, conditional branch).
A weight is skilled at a timestep when it is in the top `sparsity` fraction of its output row for the concept
prompt but not for the reference prompts; it is pruned when skilled at >= `timestep_fraction` of the timesteps.

Example:
    >>> import cadiff
    >>> from cadiff.evaluation.baselines import erase_with
    >>> edited, info = erase_with("prune", cadiff.load_pipeline(), "circle")     # doctest: +SKIP
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass
from typing import Any

import torch

from cadiff.editing.edit import with_denoiser


@dataclass
class PruneConfig:
    """Pruning settings: Wanda sparsity per timestep, timestep agreement, trajectories per prompt, layers."""

    sparsity: float = 0.01
    timestep_fraction: float = 0.5
    seeds: int = 4
    steps: int | None = None  # sampling steps (default: the model's)
    guidance: float | None = None  # guidance (default: the model's)
    layers: str = "ff.net.2"  # name suffix of the Linear layers scored and pruned (the FFN output projections)


def prunable_layers(unet: torch.nn.Module, suffix: str) -> dict[str, torch.nn.Linear]:
    """The Linear layers whose name ends with `suffix`, by name."""
    layers = {n: m for n, m in unet.named_modules() if n.endswith(suffix) and isinstance(m, torch.nn.Linear)}
    if not layers:
        raise ValueError(f"no Linear layer of the denoiser ends with '{suffix}'; give another --layers suffix")
    return layers


@torch.no_grad()
def input_norms(pipe, prompts: list[str], layers: dict[str, torch.nn.Linear], seeds: int, steps: int,
                guidance: float, seed: int) -> dict[str, torch.Tensor]:
    """Per layer, the L2 norm (steps, in_features) of each input feature over positions, prompts and seeds,
    on the conditional branch, recorded by forward pre-hooks during the stock pipeline call."""
    sums = {n: torch.zeros(steps, m.in_features, dtype=torch.float64) for n, m in layers.items()}
    step = {"i": -1}
    n_images = len(prompts) * seeds

    def count_step(module, args, kwargs):
        step["i"] += 1

    def record(name):
        def hook(module, args):
            x = args[0]
            cond = x[-n_images:] if x.shape[0] == 2 * n_images else x  # CFG batches are [uncond, cond]
            sums[name][step["i"]] += cond.detach().double().pow(2).reshape(-1, x.shape[-1]).sum(0).cpu()
        return hook

    handles = [pipe.unet.register_forward_pre_hook(count_step, with_kwargs=True)]
    handles += [m.register_forward_pre_hook(record(n)) for n, m in layers.items()]
    try:
        batch = [p for p in prompts for _ in range(seeds)]
        generators = [torch.Generator().manual_seed(seed + i) for i in range(seeds)] * len(prompts)
        pipe(batch, num_inference_steps=steps, guidance_scale=guidance, generator=generators, output_type="latent")
    finally:
        for h in handles:
            h.remove()
    return {n: s.sqrt() for n, s in sums.items()}


def top_mask(weight: torch.Tensor, norms: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Bool (out, in): the top `sparsity` fraction of each output row by Wanda score |W| * norm (at least one)."""
    score = weight.detach().abs().double().cpu() * norms[None, :]
    k = max(1, int(round(sparsity * weight.shape[1])))
    mask = torch.zeros_like(score, dtype=torch.bool)
    mask.scatter_(1, score.topk(k, dim=1).indices, True)
    return mask


def prune(pipe, concept: str, preserve: list[str] | None = None, config: PruneConfig | None = None,
          seed: int = 0) -> tuple[Any, dict[str, Any]]:
    """Prune a copy of `pipe`'s UNet for `concept` (reference prompts: `preserve`, default the empty prompt);
    return (new pipeline, info). `pipe` is unchanged."""
    from cadiff.attribution.concepts import check_known_words, concept_prompts
    from cadiff.models.loading import sampling_defaults

    config = config or PruneConfig()
    if not 0 < config.sparsity < 1 or not 0 < config.timestep_fraction <= 1:
        raise ValueError("prune needs 0 < sparsity < 1 and 0 < timestep_fraction <= 1")
    defaults = sampling_defaults(pipe)
    steps = config.steps or defaults["num_inference_steps"]
    guidance = defaults["guidance_scale"] if config.guidance is None else config.guidance
    [target], reference = concept_prompts(pipe, [concept], preserve or [], base_prompt=None if preserve else "")
    reference = reference or [""]
    check_known_words(pipe, [target, *reference])

    started = time.perf_counter()
    layers = prunable_layers(pipe.unet, config.layers)
    concept_norms = input_norms(pipe, [target], layers, config.seeds, steps, guidance, seed)
    reference_norms = input_norms(pipe, reference, layers, config.seeds, steps, guidance, seed)
    unet = copy.deepcopy(pipe.unet)
    edited_layers = prunable_layers(unet, config.layers)
    pruned: dict[str, int] = {}
    for name, layer in layers.items():
        skilled = torch.zeros(layer.weight.shape, dtype=torch.int32)
        for t in range(steps):
            skilled += (top_mask(layer.weight, concept_norms[name][t], config.sparsity)
                        & ~top_mask(layer.weight, reference_norms[name][t], config.sparsity)).int()
        mask = skilled >= config.timestep_fraction * steps
        edited_layers[name].weight.data[mask.to(layer.weight.device)] = 0
        pruned[f"{name}.weight"] = int(mask.sum())
    edited = with_denoiser(pipe, unet)
    total = sum(layer.weight.numel() for layer in layers.values())
    info = {"method": "prune", "concept": concept, "prompt": target, "reference_prompts": reference, "seed": seed,
            **asdict(config), "steps": steps, "guidance": guidance, "pruned": pruned,
            "pruned_total": sum(pruned.values()), "pruned_fraction_of_layers": round(sum(pruned.values()) / total, 6),
            "seconds": round(time.perf_counter() - started, 3)}
    return edited, info
