"""The image sets a calibrated erase is judged on, and each concept's accuracy on them with its 95 % interval.

A probe is a list of (prompt, seed) with the concepts each prompt names. On a model of a world (the embedded
shapes model) it is the world's balanced design (`repeats` times: each shape and colour named 6 times a repeat,
each texture 12), plus `extra` captions naming each target; elsewhere each concept's own prompt, 12 per repeat
(+ `extra` for a target). A concept's accuracy is the share of the images whose prompt names it that the judge
says show it.

Example:
    >>> Rate(0, 24).interval()
    (0.0, 0.138)
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from cadiff.attribution import concept_prompt
from cadiff.editing.ablate import ablated
from cadiff.files.stats import wilson
from cadiff.models.generate import render
from cadiff.worlds import World

PER_REPEAT = 12  # images per concept and repeat where the model has no world design


@dataclass(frozen=True)
class Rate:
    """`hits` of `n` images judged to show a concept."""

    hits: int
    n: int

    @property
    def value(self) -> float:
        return self.hits / self.n if self.n else 0.0

    def __add__(self, other: "Rate") -> "Rate":
        """The pooled counts of two image sets."""
        return Rate(self.hits + other.hits, self.n + other.n)

    def interval(self, z: float = 1.96) -> tuple[float, float]:
        """The Wilson score interval (95 % by default), rounded to 3 places."""
        return wilson(self.hits, self.n, z)

    def to_dict(self) -> dict:
        return {"accuracy": round(self.value, 4), "hits": self.hits, "n": self.n, "ci95": list(self.interval())}


@dataclass(frozen=True)
class Probe:
    """Prompts, one seed each, and the concepts each prompt names."""

    prompts: list[str]
    seeds: list[int]
    names: list[frozenset[str]]

    def __len__(self) -> int:
        return len(self.prompts)

    def describe(self) -> dict:
        return {"images": len(self), "seeds": [self.seeds[0], self.seeds[-1]] if self.seeds else []}


def make_probe(pipe, world: World | None, targets: Sequence[str], keep: Sequence[str], *, repeats: int,
               extra: int, seed: int) -> Probe:
    """The probe of `targets` and `keep` on `pipe` (see the module), seeds seed, seed+1, ..."""
    prompts: list[str] = []
    names: list[frozenset[str]] = []
    if world is not None:
        for prompt, labels in world.design(repeats):
            prompts.append(prompt)
            names.append(frozenset(labels.values()))
        for t in targets:
            for prompt in world.prompts_naming(t, extra, seed=seed):
                prompts.append(prompt)
                names.append(frozenset(world.labels_of(prompt).values()))
    else:
        for c in [*targets, *keep]:
            n = PER_REPEAT * repeats + (extra if c in targets else 0)
            prompts += [concept_prompt(pipe, c)] * n
            names += [frozenset({c})] * n
    return Probe(prompts, [seed + i for i in range(len(prompts))], names)


def judge_rates(images: np.ndarray, probe: Probe, judge, concepts: Sequence[str]) -> dict[str, Rate]:
    """Per concept, how many of the images whose prompt names it the judge says show it (told apart from the
    other `concepts`)."""
    out = {}
    for c in concepts:
        idx = [i for i, named in enumerate(probe.names) if c in named]
        others = [x for x in concepts if x != c]
        hits = int(np.asarray(judge.present(images[idx], c, others), dtype=bool).sum()) if idx else 0
        out[c] = Rate(hits, len(idx))
    return out


def measure(pipe, probe: Probe, judge, concepts: Sequence[str], mask=None, **sampling) -> dict[str, Rate]:
    """The rates of `concepts` on `probe`'s images from `pipe`, with `mask` zeroed if given."""
    with ablated(pipe, mask) if mask is not None else contextlib.nullcontext():
        images = render(pipe, probe.prompts, probe.seeds, **sampling)
    return judge_rates(images, probe, judge, concepts)
