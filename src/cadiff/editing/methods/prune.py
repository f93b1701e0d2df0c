"""ConceptPrune-style training-free pruning (after Chavhan et al., 2024): zero the feed-forward weights that are
'skilled' for the concept. No gradient: the score of weight W_ij at a timestep is the Wanda score
|W_ij| * ||x_j|| (x_j: input j of the FFN output layer, norm over positions and sampled images, conditional branch).
A weight is skilled at a timestep when it is in the top `sparsity` fraction of its output row for the concept
prompt but not for the reference prompts; it is pruned when skilled at >= `timestep_fraction` of the timesteps.

Example:
    >>> import cadiff
    >>> result = cadiff.erase(cadiff.load_pipeline(), "circle", method="prune")     # doctest: +SKIP
    >>> result.mask                                                                 # doctest: +SKIP
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch

from cadiff.adapters import adapter_for
from cadiff.editing.copies import edited_copy
from cadiff.attribution.concepts import Concepts
from cadiff.editing.methods import EditMethod, EditRequest, register_method
from cadiff.editing.result import EditResult
from cadiff.errors import BadInput
from cadiff.config import Config, option
from cadiff.attribution.mask import Mask
from cadiff.models.loading import denoiser
from cadiff.models.trace import DenoiserTrace, generators, sample


@dataclass(frozen=True)
class PruneConfig(Config):
    """Pruning settings: Wanda sparsity per timestep, timestep agreement, trajectories per prompt, layers."""

    sparsity: float = option(0.01, "prune: Wanda sparsity per row and timestep (default 0.01)")
    timestep_fraction: float = option(0.5, "prune: share of timesteps a weight must be skilled at (default 0.5)")
    seeds: int = option(4, "trajectories (noise draws) per prompt (default 4)", low=1)
    steps: int | None = option(None, "sampling steps (default: the model's)", low=1)
    guidance: float | None = option(None, "guidance scale (default: the model's)")
    layers: str | None = option(None, "prune: name suffix of the Linear layers scored and pruned (default: the "
                                      "feed-forward output projections of the denoiser's family, ff.net.2 for U-Nets)")
    seed: int = option(0, "prune: first seed of the trajectories it samples (default 0)")

    def __post_init__(self):
        if not 0 < self.sparsity < 1 or not 0 < self.timestep_fraction <= 1:
            raise BadInput("prune needs 0 < sparsity < 1 and 0 < timestep_fraction <= 1")


def prunable_layers(unet: torch.nn.Module, suffix: str) -> dict[str, torch.nn.Linear]:
    """The Linear layers whose name ends with `suffix`, by name."""
    layers = {n: m for n, m in unet.named_modules() if n.endswith(suffix) and isinstance(m, torch.nn.Linear)}
    if not layers:
        raise BadInput(f"no Linear layer of the denoiser ends with '{suffix}'; give another --layers suffix")
    return layers


@torch.no_grad()
def input_norms(pipe, prompts: list[str], layers: dict[str, torch.nn.Linear], seeds: int, steps: int,
                guidance: float, seed: int) -> dict[str, torch.Tensor]:
    """Per layer, the L2 norm (steps, in_features) of each input feature over positions, prompts and seeds,
    on the conditional branch, recorded by forward pre-hooks during the stock pipeline call."""
    sums = {n: torch.zeros(steps, m.in_features, dtype=torch.float64) for n, m in layers.items()}
    trace = DenoiserTrace(pipe)

    def record(name):
        def hook(module, args):
            rows = trace.current.parts.get("cond")
            if rows is not None:  # the unconditional branch's rows or call are not counted
                x = args[0][rows]
                sums[name][trace.current.step] += x.detach().double().pow(2).reshape(-1, x.shape[-1]).sum(0).cpu()
        return hook

    handles = [m.register_forward_pre_hook(record(n)) for n, m in layers.items()]
    try:
        batch = [p for p in prompts for _ in range(seeds)]
        with trace:
            sample(pipe, batch, generators([seed + i for i in range(seeds)] * len(prompts)), steps, guidance)
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


def prune_mask(pipe, concepts: Concepts, config: PruneConfig | None = None) -> tuple[Mask, dict[str, Any]]:
    """The weights ConceptPrune zeroes for the one target of the checked `concepts` (reference prompts: the
    concepts to keep, else the empty prompt), as a Mask on `pipe`'s denoiser, and what it measured. `pipe` is
    unchanged."""
    from cadiff.models.loading import model_fingerprint, resolve_sampling

    config = config or PruneConfig()
    seed = config.seed
    steps, guidance = resolve_sampling(pipe, config.steps, config.guidance)
    if not concepts.keep:
        concepts = concepts.against(pipe, "")
    concept, target, reference = concepts.targets[0], concepts.prompts[0], list(concepts.keep_prompts) or [""]

    started = time.perf_counter()
    net = denoiser(pipe)
    layers = prunable_layers(net, config.layers or adapter_for(net).ff_out)
    concept_norms = input_norms(pipe, [target], layers, config.seeds, steps, guidance, seed)
    reference_norms = input_norms(pipe, reference, layers, config.seeds, steps, guidance, seed)
    indices, shapes, pruned = {}, {}, {}
    for name, layer in layers.items():
        skilled = torch.zeros(layer.weight.shape, dtype=torch.int32)
        for t in range(steps):
            skilled += (top_mask(layer.weight, concept_norms[name][t], config.sparsity)
                        & ~top_mask(layer.weight, reference_norms[name][t], config.sparsity)).int()
        chosen = (skilled >= config.timestep_fraction * steps).reshape(-1).nonzero().reshape(-1)
        pruned[f"{name}.weight"] = int(chosen.numel())
        if chosen.numel():
            indices[f"{name}.weight"], shapes[f"{name}.weight"] = chosen, tuple(layer.weight.shape)
    mask = Mask(indices, shapes, {"fingerprint": model_fingerprint(pipe), "method": "prune", "concepts": [concept]})
    total = sum(layer.weight.numel() for layer in layers.values())
    info = {"concept": concept, "prompt": target, "reference_prompts": reference, "seed": seed,
            "steps": steps, "guidance": guidance, "pruned": pruned,
            "pruned_total": sum(pruned.values()), "pruned_fraction_of_layers": round(sum(pruned.values()) / total, 6),
            "seconds": round(time.perf_counter() - started, 3)}
    return mask, info


@register_method
class Prune(EditMethod):
    name = "prune"
    summary = "ConceptPrune-style pruning (Chavhan et al. 2024): zero FFN weights skilled for the concept (baseline)"
    config_class = PruneConfig
    concepts_at_once = 1

    def run(self, pipe, request: EditRequest) -> EditResult:
        concepts = request.concepts
        mask, info = prune_mask(pipe, concepts, config=self.config)
        return EditResult(edited_copy(pipe, mask, check=False), self.name, request.objective,
                          list(concepts.targets), list(concepts.keep), self.config, mask=mask, info=info,
                          seconds=info["seconds"], base=pipe)

