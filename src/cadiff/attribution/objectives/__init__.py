"""CAD objectives J, one class per objective, registered by name: what `attribute()` differentiates, and which
side of the scores an edit with it zeroes. A new objective is one file here plus its `@register_objective`.

Example:
    >>> from cadiff.attribution.objectives import OBJECTIVES, get_objective
    >>> sorted(OBJECTIVES), get_objective("amplify").select_sign
    (['amplify', 'erase'], 'negative')
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar

from cadiff.attribution.estimators import Row, Step
from cadiff.errors import BadInput
from cadiff.registry import Registry

ESTIMATORS = ("trajectory", "restart")


@dataclass
class Samples:
    """The terms J is summed over (`steps`), the rows they come from, and what a result records about them."""

    rows: list[Row]
    steps: list[Step]
    info: dict[str, Any] = field(default_factory=dict)


class Objective:
    """J = sign * sum over terms of scale * ||denoiser(sample, t) - target||^2, mean over each concept's rows."""

    name: ClassVar[str]
    sign: ClassVar[float] = 1.0                 # +1: J is the distance (erase); -1: minus a loss (amplify)
    select_sign: ClassVar[str] = "positive"     # the scores an edit with this objective zeroes
    uses_base_prompt: ClassVar[bool] = False    # J compares the concept with the base prompt
    takes_images: ClassVar[bool] = False        # concept images may stand in for generated ones
    estimators: ClassVar[tuple[str, ...]] = ("trajectory",)

    def check(self, *, estimator: str, images: str | Path | None, targets: int) -> None:
        """ValueError, before any model work, for settings this objective does not take."""
        if estimator not in self.estimators:
            raise BadInput(f"the {self.name} objective has the estimator(s) {', '.join(self.estimators)}, "
                           f"not '{estimator}'")
        if images is not None and not (self.takes_images and targets == 1):
            raise BadInput("an image folder goes with objective='amplify' and exactly one concept")

    def samples(self, pipe, denoiser, rows: list[Row], *, steps: int, guidance: float, estimator: str,
                base_prompt: str, batch_size: int, images: str | Path | None, only: set[int] | None,
                tick: Callable[[int], None] | None) -> Samples:
        raise NotImplementedError


OBJECTIVES = Registry("objective")
register_objective = OBJECTIVES.register


def get_objective(name: str) -> Objective:
    """The registered objective called `name`; ValueError naming the known ones otherwise."""
    return OBJECTIVES.lookup(name)()


# the built-in objectives register themselves, erase first (the default)
from cadiff.attribution.objectives import erase  # noqa: E402,F401,I001
from cadiff.attribution.objectives import amplify  # noqa: E402,F401
