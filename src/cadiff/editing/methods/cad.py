"""CAD-Erase and CAD-Amplify: score every selected weight by w * dJ/dw (`attribute`) and zero the top positive
(erase) or top negative (amplify) scores per row; in `rounds` > 1 the scores are taken again on the model edited
so far and each round adds its own top `ratio` (or `count`), the first-order estimate renewed around the edit.

Example:
    >>> result = cadiff.erase(pipe, "circle", CADConfig(components="linear", seeds=16, ratio=0.03))  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import ClassVar

from cadiff.attribution import attribute
from cadiff.attribution.concepts import Concepts
from cadiff.attribution.config import AttributionConfig
from cadiff.attribution.objectives import get_objective
from cadiff.editing.ablate import ablated
from cadiff.editing.copies import edited_copy
from cadiff.editing.methods import EditMethod, EditRequest, register_method
from cadiff.editing.result import EditResult
from cadiff.editing.selection import DEFAULT_RATIO, SelectionConfig
from cadiff.errors import BadInput
from cadiff.config import option


@dataclass(frozen=True)
class CADConfig(AttributionConfig, SelectionConfig):
    """CAD attribution settings plus the selection: the top `ratio` (or `count`) per row / matrix / all, `rounds`
    times."""

    shards: ClassVar[bool] = False  # the scored model is edited

    rounds: int = option(1, "re-score on the edited model and zero another --ratio, this many times in all "
                            "(default 1); every round's mask is kept (mask.roundK.safetensors)", low=1)
    round_ratios: tuple[float, ...] | None = option(
        None, "a ratio per round, comma separated (e.g. 0.03,0.03,0.02): as many rounds as ratios, instead of "
              "--ratio and --rounds", low=0, high=1, low_open=True)

    def __post_init__(self):
        AttributionConfig.__post_init__(self)
        if self.round_ratios is not None:
            self._take_round_ratios()
        SelectionConfig.__post_init__(self)
        if int(self.rounds) != self.rounds or self.rounds < 1:
            raise BadInput(f"rounds must be a positive integer, got {self.rounds}")

    def _take_round_ratios(self) -> None:
        ratios = tuple(float(r) for r in self.round_ratios)
        if not ratios or not all(0.0 < r <= 1.0 for r in ratios):
            raise BadInput(f"round_ratios must be fractions in (0, 1], one per round, got {self.round_ratios}")
        if self.count is not None or self.ratio not in (None, DEFAULT_RATIO, ratios[0]) or \
                self.rounds not in (1, len(ratios)):
            raise BadInput("round_ratios sets the ratio and the number of rounds: give it without ratio, count "
                           "and rounds (--round-ratios 0.03,0.03,0.02)")
        object.__setattr__(self, "round_ratios", ratios)
        object.__setattr__(self, "ratio", ratios[0])
        object.__setattr__(self, "rounds", len(ratios))

    def ratio_in(self, k: int) -> float | None:
        """The ratio round `k` (from 1) zeroes: its entry of round_ratios, else `ratio`."""
        return self.round_ratios[k - 1] if self.round_ratios else self.ratio


@register_method
class CAD(EditMethod):
    name = "cad"
    summary = "CAD: zero the weights whose scores w * dJ/dw carry the concept, at the settings given"
    config_class = CADConfig
    objectives = ("erase", "amplify")
    default_for = ("amplify",)
    takes_images = True

    def run(self, pipe, request: EditRequest) -> EditResult:
        cfg, concepts = self.config, request.concepts
        started, mask, rounds = time.perf_counter(), None, {}
        for k in range(1, cfg.rounds + 1):
            attrs = score_round(pipe, concepts, cfg, objective=request.objective, mask=mask, images=request.images,
                                progress=request.progress)
            mask = add_selection(mask, attrs, cfg, request.objective, k)
            rounds[k] = mask
            request.step(k, mask)
        seconds = time.perf_counter() - started
        return EditResult(edited_copy(pipe, mask, check=False), self.name, request.objective, list(concepts.targets),
                          list(concepts.keep), cfg, mask=mask, attributions=attrs, rounds=rounds, seconds=seconds, base=pipe,
                          info={"prompts": list(concepts.prompts),
                                "attribution_seconds": [a.metadata["seconds"] for a in attrs]})


def score_round(pipe, concepts: Concepts, cfg: CADConfig, *, objective: str, mask=None, images=None,
                progress: bool = True) -> list:
    """The attributions of `concepts`' targets (one each, against its keep set) with `cfg`'s settings, on the
    model with `mask` zeroed (the next round's scores) or, without one, on the model itself."""
    with ablated(pipe, mask) if mask is not None else contextlib.nullcontext():
        return attribute(pipe, concepts, cfg.attribution(), objective=objective, images=images, progress=progress)


def add_selection(mask, attrs, cfg: CADConfig, objective: str, k: int = 1):
    """`mask` (None before round 1) united with every attribution's top `cfg.ratio_in(k)` (or count) per scope, on
    the objective's side of zero; round `k` > 1 scores were taken on the edited model, whose indices address the
    original one, so its selections carry the original model's fingerprint."""
    sign = get_objective(objective).select_sign
    for a in attrs:
        new = a.select(ratio=cfg.ratio_in(k), count=cfg.count, sign=sign, scope=cfg.scope)
        if mask is not None:
            new.metadata.update(fingerprint=mask.fingerprint, round=k)
        mask = new if mask is None else mask | new
    return mask
