"""The guard and the relative rule: a target's scores less, per weight, the largest positive score of any concept
to keep (as such, or with every score in shares of its concept's J).

Both rules are folded from per-concept attributions, each computed alone, so `attribute(..., preserve_rule="guard")`
and a search that re-uses per-concept scores compute the same numbers in the same order.

Example:
    >>> own = attribute(pipe, "circle")                                          # doctest: +SKIP
    >>> maxima = fold_maxima(attribute(pipe, c) for c in ["square", "star"])     # doctest: +SKIP
    >>> guarded = with_keep_rule(own, maxima, "guard")                           # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import torch

from cadiff.attribution.result import Attribution
from cadiff.errors import BadInput


@dataclass
class KeepMaxima:
    """Per weight, the largest positive score of the concepts to keep (`guard`) and the largest positive share of
    a concept's J (`relative`); the concepts, their prompts and their J in the order folded."""

    guard: dict[str, torch.Tensor] = field(default_factory=dict)
    relative: dict[str, torch.Tensor] = field(default_factory=dict)
    concepts: list[str] = field(default_factory=list)
    prompts: list[str] = field(default_factory=list)
    J: list[float] = field(default_factory=list)
    seconds: float = 0.0


def unit(j: float) -> float:
    """1 / J, the factor that puts a concept's scores in shares of its own J (J = 0: nothing to share)."""
    return 1.0 / j if j > 0 else 0.0


def fold_maxima(attributions: Iterable[Attribution]) -> KeepMaxima:
    """The KeepMaxima of the concepts to keep, taking their attributions one at a time (one alive at a time when
    `attributions` is a generator: two fp32 copies of the selected weights beside it)."""
    out = KeepMaxima()
    for a in attributions:
        share = unit(a.metadata["J"])
        for name, s in a.scores.items():
            positive = s.clamp_min(0)
            out.guard[name] = torch.maximum(out.guard[name], positive) if name in out.guard else positive
            shares = positive * share
            out.relative[name] = torch.maximum(out.relative[name], shares) if name in out.relative else shares
        out.concepts += a.metadata["concepts"]
        out.prompts += a.metadata["prompts"]
        out.J.append(a.metadata["J"])
        out.seconds += a.metadata.get("seconds", 0.0)
    return out


def with_keep_rule(own: Attribution, maxima: KeepMaxima, rule: str) -> Attribution:
    """The target's scores under `rule` ("guard" or "relative") from its own scores and the concepts' maxima."""
    if rule == "guard":
        scores = {n: s - maxima.guard[n] for n, s in own.scores.items()}
    elif rule == "relative":
        share = unit(own.metadata["J"])
        scores = {n: s * share - maxima.relative[n] for n, s in own.scores.items()}
    else:
        raise BadInput(f"unknown keep rule '{rule}': guard or relative")
    meta = {**own.metadata, "preserve": list(maxima.concepts), "preserve_prompts": list(maxima.prompts),
            "preserve_rule": rule, "J_preserve": list(maxima.J),
            "seconds": round(own.metadata.get("seconds", 0.0) + maxima.seconds, 3)}
    return Attribution(scores, meta)
