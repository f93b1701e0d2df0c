"""The magnitude control: zero the largest-|w| weights of the same components, in the same amount per row as CAD
(`ratio` / `count` / `scope`). It ignores the concept, so it tells whether attribution beats weight size: an erase
that this control matches was not about the concept.

Example:
    >>> result = cadiff.erase(pipe, "circle", method="magnitude", components="linear", ratio=0.03)   # doctest: +SKIP
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from cadiff.attribution.components import grouped_scores, select_parameters
from cadiff.editing.copies import edited_copy
from cadiff.editing.methods import EditMethod, EditRequest, register_method
from cadiff.editing.result import EditResult
from cadiff.editing.selection import SelectionConfig
from cadiff.config import option
from cadiff.attribution.mask import Mask
from cadiff.attribution.selection import join_parts, select_indices
from cadiff.models.loading import denoiser, model_fingerprint


@dataclass(frozen=True)
class MagnitudeConfig(SelectionConfig):
    """Which weights (`components`, as CAD names them) and how many (the selection, as CAD's)."""

    components: str = option("ff", "ff (default, the paper's), attn, linear, all, or a name regex")


def magnitude_mask(pipe, config: MagnitudeConfig) -> Mask:
    """The largest-|w| weights of `config.components`, `config.ratio` (or `count`) per `config.scope`."""
    net = denoiser(pipe)
    params = select_parameters(net, config.components)
    whole = {n: p.detach().abs().float().cpu() for n, p in params.items()}
    scores, parts, heads = grouped_scores(net, config.components, whole)  # fused weights: the group's slices
    indices = join_parts(select_indices(scores, ratio=config.ratio, count=config.count, sign="positive",
                                        scope=config.scope, heads=heads), parts)
    return Mask(indices, {n: tuple(whole[n].shape) for n in indices},
                {"fingerprint": model_fingerprint(pipe), "method": "magnitude", "components": config.components,
                 "selection": {"ratio": config.ratio, "count": config.count, "scope": config.scope}})


@register_method
class Magnitude(EditMethod):
    name = "magnitude"
    summary = "magnitude control: zero the largest |w| in CAD's amount, ignoring the concept"
    config_class = MagnitudeConfig
    takes_preserve = False

    def run(self, pipe, request: EditRequest) -> EditResult:
        started = time.perf_counter()
        mask = magnitude_mask(pipe, self.config)
        return EditResult(edited_copy(pipe, mask, check=False), self.name, request.objective,
                          list(request.concepts.targets), [], self.config, mask=mask,
                          seconds=time.perf_counter() - started, base=pipe)
