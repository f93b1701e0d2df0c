"""The settings of a CAD attribution, as one frozen dataclass: what `attribute()` takes, what its files record,
and what `cadiff attribute | erase | amplify` make their flags from.

Example:
    >>> AttributionConfig(seeds=16, components="linear", at_steps="early").estimator
    'trajectory'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Sequence

from cadiff.attribution.objectives import ESTIMATORS
from cadiff.config import Config, option
from cadiff.distributed import launched_world, rank_and_world
from cadiff.errors import BadInput

PRESERVE_RULES = ("mean", "guard", "relative")
ACCUMULATORS = ("device", "cpu", "sharded")


@dataclass(frozen=True)
class ScoringConfig(Config):
    """What CAD scores are sampled from: the settings no search of cadiff's chooses (the defaults are the paper's,
    with 4 trajectories)."""

    seeds: int | Sequence[int] = option(4, "trajectories (noise draws) per concept, or a list of seeds (default 4)",
                                        low=1)
    steps: int | None = option(None, "sampling steps (default: the model's)", low=1)
    guidance: float | None = option(None, "guidance scale (default: the model's)", low=0)
    components: str = option("ff", "ff (default, the paper's), attn, text (the weights that read the text: "
                                   "cross-attention keys and values), linear, all, or a name regex")
    estimator: str = option("trajectory", "erase objective's estimator: one pass per trajectory (default) or the "
                                          "reference re-sampling (slow)", choices=ESTIMATORS)
    base_prompt: str = option("", "erase objective's reference prompt (default: empty)")
    batch_size: int = option(16, "rows per pipeline call (default 16)", low=1)
    checkpointing: bool = option(False, "recompute the denoiser's block activations in the backward pass: less "
                                        "memory for large models, some more time")
    accumulators: str = option("device", "where the fp32 gradient sums live: device (default, beside the weights), "
                                         "cpu (host memory), or sharded (the denoiser's weights and the sums split "
                                         "across the processes of a multi-process run, FSDP2)", choices=ACCUMULATORS)

    # whether accumulators="sharded" is offered: only where the model is not edited after scoring (a sharded
    # denoiser stays sharded)
    shards: ClassVar[bool] = False

    def __post_init__(self):
        if isinstance(self.seeds, list):
            object.__setattr__(self, "seeds", tuple(self.seeds))
        if isinstance(self.seeds, int):
            if self.seeds < 1:
                raise BadInput(f"seeds must be a positive count or a list of seeds, got {self.seeds}")
        elif not list(self.seeds):
            raise BadInput("seeds is empty; give a count (e.g. 4) or a list of seeds")
        if self.estimator not in ESTIMATORS:
            raise BadInput(f"estimator must be one of {', '.join(ESTIMATORS)}, got '{self.estimator}'")
        if self.accumulators not in ACCUMULATORS:
            raise BadInput(f"accumulators must be one of {', '.join(ACCUMULATORS)}, got '{self.accumulators}'")
        if self.accumulators == "sharded":
            if not self.shards:
                raise BadInput("accumulators='sharded' leaves the denoiser sharded, so it is offered by `cadiff "
                               "attribute` only; use accumulators='cpu' here")
            if max(launched_world(), rank_and_world()[1]) < 2:
                raise BadInput("accumulators='sharded' splits the model across processes; launch several "
                               "(torchrun --nproc-per-node N -m cadiff ...) or use accumulators='cpu'")
        for name in ("steps", "batch_size"):
            value = getattr(self, name)
            if value is not None and (int(value) != value or value < 1):
                raise BadInput(f"{name} must be a positive integer, got {value}")

    def seed_list(self) -> list[int]:
        return list(range(self.seeds)) if isinstance(self.seeds, int) else [int(s) for s in self.seeds]


@dataclass(frozen=True)
class AttributionConfig(ScoringConfig):
    """How CAD scores are computed: what they are sampled from, the steps they sum over and how the concepts to
    keep count."""

    at_steps: str | Sequence[int] = option("all", "steps the objective sums over: all (default), early, middle, "
                                                  "final, or indices like 0,1,2")
    shards: ClassVar[bool] = True

    preserve_rule: str = option("mean", "how --preserve counts: mean (default), guard (per weight, the largest "
                                        "positive score of any concept to keep) or relative (the guard on scores in "
                                        "shares of each concept's J)", choices=PRESERVE_RULES)

    def __post_init__(self):
        ScoringConfig.__post_init__(self)
        if self.preserve_rule not in PRESERVE_RULES:
            raise BadInput(f"preserve_rule must be one of {', '.join(PRESERVE_RULES)}, got '{self.preserve_rule}'")

    def attribution(self) -> "AttributionConfig":
        """The settings `attribute()` takes, out of a config that extends them (an edit method's)."""
        return self.part(AttributionConfig)


@dataclass(frozen=True)
class GuardedAttributionConfig(AttributionConfig):
    """The calibrated erase's guarded line of scores, the default of the methods that score again on their own (the
    hardening, CAD-Train): linear weights, early steps, the guard rule."""

    components: str = option("linear", "the weights scored: linear (default), ff, attn, text, all, or a name regex")
    at_steps: str | Sequence[int] = option("early", "steps the scores sum over (default early)")
    preserve_rule: str = option("guard", "how the concepts to keep count in the scores (default guard)",
                                choices=PRESERVE_RULES)
