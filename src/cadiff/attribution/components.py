"""Which weights of a denoiser are components: groups named by the denoiser's adapter, or a name regex.

A component is one scalar weight. Groups select weight tensors by name:
- "ff" (default, the paper's set): 2-D feed-forward weights of transformer blocks
  (`ff.net.0.proj.weight`, `ff.net.2.weight`; in MMDiTs also the text stream's `ff_context`);
- "attn": 2-D attention weights of transformer blocks (U-Net `attn1.*`, `attn2.*`; MMDiT `attn.*`);
- "text": the weights the text embedding is the input of: cross-attention keys and values (U-Net, PixArt, Sana
  `attn2.to_k/v`), in MMDiTs the joint attention's text-stream projections (`add_q/k/v_proj`);
- "linear": every 2-D weight of transformer blocks;
- "all": every parameter of the denoiser;
- anything else is a regular expression matched (re.search) against parameter names.

Example:
    >>> from cadiff.attribution.components import select_parameters
    >>> params = select_parameters(pipe.unet, "ff")          # doctest: +SKIP
    >>> sorted(params)[0]                                     # doctest: +SKIP
    'down_blocks.0.attentions.0.transformer_blocks.0.ff.net.0.proj.weight'
"""

from __future__ import annotations

import re

import torch

from cadiff.adapters import GROUPS, Part, adapter_for  # noqa: F401  (GROUPS re-exported)
from cadiff.errors import BadInput


def select_parameters(module: torch.nn.Module, components: str = "ff") -> dict[str, torch.nn.Parameter]:
    """The parameters named by a group ('ff', 'attn', 'text', 'linear', 'all') or a regex; ValueError if none
    match."""
    if components in GROUPS:
        adapter = adapter_for(module)
        fused = {name for name, parts in adapter.parts(module).items() if any(p.group == components for p in parts)}
        chosen = {n: p for n, p in module.named_parameters() if adapter.in_group(n, p, components) or n in fused}
    else:
        try:
            pattern = re.compile(components)
        except re.error as exc:
            raise BadInput(f"components '{components}' is neither a group ({', '.join(GROUPS)}) "
                           f"nor a valid regular expression: {exc}") from exc
        chosen = {n: p for n, p in module.named_parameters() if pattern.search(n)}
    if not chosen:
        raise BadInput(f"components '{components}' selects no parameter of this {type(module).__name__}; "
                       f"use a group ({', '.join(GROUPS)}) or a regex matching its parameter names")
    return chosen


def group_parts(module: torch.nn.Module, components: str) -> dict[str, tuple[str, Part]]:
    """The slices of fused weights a group holds (the rest of such a weight belongs to another group), by the name
    their scores go by: {'<parameter>#<label>': (parameter, Part)}. None for 'linear', 'all' or a regex, which take
    fused weights whole."""
    if components not in GROUPS or components in ("linear", "all"):
        return {}
    parts = adapter_for(module).parts(module)
    return {part.key(name): (name, part) for name, fused in parts.items() for part in fused if part.group == components}


def grouped_scores(module: torch.nn.Module, components: str, scores: dict[str, torch.Tensor]
                   ) -> tuple[dict[str, torch.Tensor], dict[str, list], dict[str, list]]:
    """Scores of whole parameters as the group holds them: a fused weight's by its slices in the group. Returns the
    scores, the slices' record {'<parameter>#<label>': [parameter, axis, start, stop, shape]} (what `join_parts`
    maps selections back with) and the head layout of everything in them."""
    parts = group_parts(module, components)
    out = {n: s for n, s in scores.items() if n not in {name for name, _ in parts.values()}}
    record = {}
    heads = {n: v for n, v in adapter_for(module).head_layout(module).items() if n in out}
    for key, (name, part) in parts.items():
        if name not in scores:
            continue
        out[key] = scores[name].narrow(part.axis, part.start, part.stop - part.start).contiguous()
        record[key] = [name, part.axis, part.start, part.stop, list(scores[name].shape)]
        if part.heads is not None:
            heads[key] = [part.heads[0], part.axis, part.heads[1]]
    return out, record, heads


def count_components(params: dict[str, torch.Tensor]) -> int:
    """Number of scalar weights in a selection."""
    return sum(p.numel() for p in params.values())
