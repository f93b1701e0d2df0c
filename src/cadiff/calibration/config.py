"""The settings of a calibrated erase: the goal, the search budget and the image sets it is judged on
(CalibrationConfig), and with CAD's settings that no search chooses, the calibrated erase's config
(CalibratedConfig: a method is its config).

Example:
    >>> CalibratedConfig(goal_target=0.1).goal_keep, CalibratedConfig().seeds
    (0.95, 16)
"""

from __future__ import annotations

from dataclasses import dataclass

from typing import ClassVar, Sequence

from cadiff.attribution.config import ScoringConfig
from cadiff.editing.goal import GOAL_TARGET, KEEP_GOAL
from cadiff.editing.methods.cad import CADConfig
from cadiff.editing.selection import ScopeConfig
from cadiff.errors import BadInput
from cadiff.config import Config, option


@dataclass(frozen=True)
class CalibrationConfig(Config):
    """Goal: every target judged present in at most `goal_target` of its images, every concept to keep at least
    `goal_keep` of its accuracy before the edit. The search screens at most `budget` settings on the screening
    images and confirms its choice on others."""

    goal_target: float = option(GOAL_TARGET, "goal: the target judged present in at most this share of its images "
                                      "(default 0.05)", low=0, high=1)
    goal_keep: float = option(KEEP_GOAL, "goal: every concept to keep keeps at least this share of its accuracy "
                                    "(default 0.95)", low=0, high=1)
    budget: int = option(12, "most settings the search screens (default 12)", low=1)
    screen_repeats: int = option(1, "screening images: the world's design this many times (36 images each on the "
                                    "embedded model; elsewhere 12 per concept) (default 1)", low=1)
    screen_extra: int = option(12, "screening images naming each target beyond those (default 12)", low=0)
    confirm_repeats: int = option(4, "confirmation images: the design this many times, on new seeds (default 4: "
                                     "144 on the embedded model), looked at first", low=1)
    confirm_max_repeats: int = option(16, "most confirmation images: while a claim is undecided the design is added "
                                          "again, doubling the total up to this many times (default 16: 576 on the "
                                          "embedded model)", low=1)
    confidence: float = option(0.95, "confidence of the certificate's one-sided bounds (default 0.95)",
                               low=0, high=1)
    screen_seed: int = option(100_000, "first seed of the screening images (default 100000)", low=0)
    tie_seed: int = option(150_000, "first seed of the images that break a tie between the best settings when "
                                    "none met the goal (default 150000)", low=0)
    confirm_seed: int = option(200_000, "first seed of the confirmation images (default 200000)", low=0)

    def __post_init__(self):
        for name in ("goal_target", "goal_keep"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise BadInput(f"{name} must be in [0, 1], got {value} (--{name.replace('_', '-')})")
        if int(self.budget) != self.budget or self.budget < 1:
            raise BadInput(f"the search budget must be at least one setting, got {self.budget} (--budget)")
        for name in ("screen_repeats", "confirm_repeats", "confirm_max_repeats"):
            if int(getattr(self, name)) != getattr(self, name) or getattr(self, name) < 1:
                raise BadInput(f"{name} must be a positive integer, got {getattr(self, name)}")
        if self.confirm_max_repeats < self.confirm_repeats:
            raise BadInput(f"confirm_max_repeats ({self.confirm_max_repeats}) is below confirm_repeats "
                           f"({self.confirm_repeats}); raise --confirm-max-repeats")
        if not 0.5 <= self.confidence < 1.0:
            raise BadInput(f"confidence must be in [0.5, 1), got {self.confidence} (--confidence)")
        for name in ("screen_extra", "screen_seed", "tie_seed", "confirm_seed"):
            if int(getattr(self, name)) != getattr(self, name) or getattr(self, name) < 0:
                raise BadInput(f"{name} must be 0 or more, got {getattr(self, name)}")


@dataclass(frozen=True)
class CalibratedConfig(ScoringConfig, ScopeConfig, CalibrationConfig):
    """The calibrated erase: CAD's settings that no search chooses (what the scores are sampled from, the scope of
    the selection), the goal and the search's budget and image sets. The steps the scores sum over, the keep rule,
    the ratio and the rounds are the search's to choose (`cad`)."""

    not_options: ClassVar[dict[str, str]] = dict.fromkeys(
        ("ratio", "count", "rounds", "round_ratios", "at_steps", "preserve_rule"),
        "chosen by the calibrated erase's search; to run CAD at a setting you give, use CADConfig (--method cad)")

    seeds: int | Sequence[int] = option(16, "trajectories (noise draws) per concept, or a list of seeds (default 16, "
                                            "measured on the embedded model)", low=1)
    components: str = option("linear", "the weights scored: linear (default, measured on the embedded model), ff, "
                                       "attn, text, all, or a name regex")

    def __post_init__(self):
        ScoringConfig.__post_init__(self)
        ScopeConfig.__post_init__(self)
        CalibrationConfig.__post_init__(self)

    def cad(self, **searched) -> CADConfig:
        """CAD's config at one point of the search: these settings with the `searched` ones (at_steps,
        preserve_rule, ratio, rounds or round_ratios)."""
        return self.part(CADConfig, **searched)
