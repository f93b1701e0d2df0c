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

from cadiff.adapters import GROUPS, adapter_for  # noqa: F401  (GROUPS re-exported)
from cadiff.errors import BadInput


def select_parameters(module: torch.nn.Module, components: str = "ff") -> dict[str, torch.nn.Parameter]:
    """The parameters named by a group ('ff', 'attn', 'text', 'linear', 'all') or a regex; ValueError if none
    match."""
    if components in GROUPS:
        adapter = adapter_for(module)
        chosen = {n: p for n, p in module.named_parameters() if adapter.in_group(n, p, components)}
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


def count_components(params: dict[str, torch.Tensor]) -> int:
    """Number of scalar weights in a selection."""
    return sum(p.numel() for p in params.values())
