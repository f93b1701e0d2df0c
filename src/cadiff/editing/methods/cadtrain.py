"""CAD-Train: fine-tune only where CAD points. Zeroing CAD's top weights removes the prompt's path to a concept but
leaves the concept in the weights, where a learned token finds it again; ESD trains it out, but trains every weight
and takes the neighbours with it. CAD-Train trains ESD's objective on CAD's top weights only, while holding the
concepts to keep:

1. CAD scores the concept against the concepts to keep (any objective setting `attribute` takes; by default the
   calibrated erase's guarded line: linear weights, early steps, the guard rule), and the top `ratio` per row
   (or `count`, per `scope`) is the region that may change, less the weights that read the text (cross-attention
   keys and values; `train_text` keeps them): trained there, the edit would only reroute the concept's word, and a
   learned token would find the concept by another input, as it does after zeroing;
2. ESD's fine-tuning (`fine_tune`: the student's output for the concept regressed onto the frozen model's output
   guided away from it) moves those weights alone, plus `keep_weight` times the distance of the student's output
   for the concepts to keep from the frozen model's, at the same step of their own trajectories.

Every other weight stays as it was, bit for bit, so the edit exports as a sparse patch or peft adapter.

Example:
    >>> result = cadiff.erase(pipe, "circle", CADTrainConfig(ratio=0.1, iterations=100))   # doctest: +SKIP
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import ClassVar, Sequence

from cadiff.attribution import attribute, select_parameters
from cadiff.attribution.config import GuardedAttributionConfig
from cadiff.config import option
from cadiff.editing.methods import EditMethod, EditRequest, register_method
from cadiff.editing.methods.esd import FineTuneConfig, fine_tune
from cadiff.editing.result import EditResult
from cadiff.editing.selection import SelectionConfig
from cadiff.errors import BadInput
from cadiff.models.loading import denoiser


@dataclass(frozen=True)
class CADTrainConfig(GuardedAttributionConfig, SelectionConfig, FineTuneConfig):
    """Where to train (CAD's scores and selection: by default 8 trajectories, linear weights, early steps, the guard
    rule, 10 % per row, less the weights that read the text) and how (ESD's fine-tuning: 100 iterations at lr 1e-2,
    with the concepts to keep held at `keep_weight`). The defaults are the levers' best on circle that keeps every
    other concept (docs/evaluation.md)."""

    shards: ClassVar[bool] = False  # the scored model is edited

    seeds: int | Sequence[int] = option(8, "trajectories per concept CAD scores (default 8)", low=1)
    ratio: float | None = option(0.1, "fraction per row/matrix/all that trains (default 0.1)", low=0, high=1,
                                 low_open=True)
    iterations: int = option(100, "fine-tuning iterations (default 100)", low=1)
    lr: float = option(1e-2, "fine-tuning learning rate (default 1e-2: only a tenth of the weights move)")
    keep_weight: float = option(1.0, "weight of the term that holds the concepts to keep (default 1; 0: none)",
                                low=0)
    train_text: bool = option(False, "train the weights that read the text too (cross-attention keys and values; "
                                     "default: not, so the edit cannot just reroute the concept's word)")

    def __post_init__(self):
        GuardedAttributionConfig.__post_init__(self)
        SelectionConfig.__post_init__(self)
        FineTuneConfig.__post_init__(self)
        if self.keep_weight < 0:
            raise BadInput(f"keep_weight must be >= 0, got {self.keep_weight}")


@register_method
class CADTrain(EditMethod):
    name = "cadtrain"
    summary = "CAD-Train: fine-tune only the weights CAD points at, away from the concept, holding the others"
    config_class = CADTrainConfig
    concepts_at_once = 1
    keeps_world = True

    def run(self, pipe, request: EditRequest) -> EditResult:
        cfg, concepts = self.config, request.concepts
        started = time.perf_counter()
        (attr,) = attribute(pipe, concepts, cfg.attribution(), objective=request.objective, progress=request.progress)
        region = attr.select(ratio=cfg.ratio, count=cfg.count, scope=cfg.scope)
        if not cfg.train_text:
            region = region.without(self.text_weights(pipe))
        edited, info = fine_tune(pipe, concepts, cfg.part(FineTuneConfig), region.booleans(),
                                 keep_prompts=concepts.keep_prompts, keep_weight=cfg.keep_weight)
        info = {"method": self.name, "prompts": list(concepts.prompts), "region": len(region),
                "attribution_seconds": attr.metadata["seconds"], **info}
        return EditResult(edited, self.name, request.objective, list(concepts.targets), list(concepts.keep), cfg,
                          attributions=[attr], info=info, seconds=time.perf_counter() - started, base=pipe)

    @staticmethod
    def text_weights(pipe) -> set[str]:
        """The denoiser's weights that read the text, as its family names them (the 'text' group)."""
        return set(select_parameters(denoiser(pipe), "text"))
