"""Attacks on an erased model: does the concept come back? Each attack is measured on the edited model and, as the
reference, on the original, by a judge (the world's on the embedded model): the attack success rate is the share of
the attack's images the judge reads as the concept.

- `prompt`: every phrasing that asks for the concept (the world's, or a CSV of adversarial prompts);
- `token`: a learned token (textual inversion on the edited model, a fixed budget), then prompts with it;
- `revival`: from the edited weights alone, the exactly-zero entries of each matrix refilled by low-rank matrix
  completion (soft-thresholded SVD), then the concept's prompts; also the kept concepts' accuracy, as the model
  changes.

A new attack is one class with a frozen config and `@register_attack`.

Example:
    >>> from cadiff.attacks import attack
    >>> result = attack(pipe, edited.pipeline, "circle")                # doctest: +SKIP
    >>> result.table()                                                   # doctest: +SKIP
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, ClassVar, Sequence

import numpy as np

from cadiff.evaluation.accuracy import Probe, Rate, judge_rates
from cadiff.errors import BadInput
from cadiff.evaluation.judges import Judge, as_judge
from cadiff.config import Config, make_config
from cadiff.registry import Registry
from cadiff.models.generate import render
from cadiff.worlds import world_of


@dataclass
class Target:
    """What every attack is given: the original and the edited pipeline, the concept, the concepts to keep, the
    judge, the world (None for a user's model) and the images per prompt."""

    original: Any
    edited: Any
    concept: str
    keep: list[str]
    judge: Judge
    world: Any
    per_prompt: int
    cache: dict = field(default_factory=dict)

    def reference(self, key: str, compute):
        """The original model's result for `key`, computed once per cache (the same for every edit of one model
        and concept, so a caller comparing edits passes one `cache` to every `attack` call)."""
        if key not in self.cache:
            self.cache[key] = compute()
        return self.cache[key]

    def success(self, pipe, texts: Sequence[str], seed: int = 0) -> tuple[Rate, np.ndarray]:
        """The share of images (each prompt of `texts` x `per_prompt` seeds) the judge reads as the concept, and the images."""
        rows = [(p, seed + k * 1000 + i) for i, p in enumerate(texts) for k in range(self.per_prompt)]
        probe = Probe([p for p, _ in rows], [s for _, s in rows], [frozenset({self.concept})] * len(rows))
        images = render(pipe, probe.prompts, probe.seeds)
        return judge_rates(images, probe, self.judge, [self.concept], others=self.keep)[self.concept], images


@dataclass
class Outcome:
    """One attack's result: success on the edited model and on the original (the reference), further reference
    rows, the kept concepts' accuracy where the attack changes the model, its settings, time and pictures."""

    name: str
    settings: dict[str, Any]
    edited: Rate
    original: Rate
    references: dict[str, Rate] = field(default_factory=dict)
    keep: dict[str, float] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    images: np.ndarray | None = None

    def to_dict(self) -> dict:
        return {"attack": self.name, "settings": self.settings, "edited": self.edited.to_dict(),
                "original": self.original.to_dict(), "references": {k: v.to_dict() for k, v in self.references.items()},
                "keep": self.keep, "info": self.info, "seconds": round(self.seconds, 2)}


class Attack:
    """An attack on an erase: `check` refuses what it cannot attack before any work, `run` tries to bring the
    concept back on the edited model and returns an Outcome (success there and on the original). One class per
    attack, with a config class, registered by name."""

    name: ClassVar[str]
    summary: ClassVar[str]
    config_class: ClassVar[type[Config]]

    def __init__(self, config: Config):
        self.config = config

    def check(self, target: Target) -> None:
        """ValueError, before any work, for a target this attack cannot run on."""

    def run(self, target: Target) -> Outcome:
        raise NotImplementedError


ATTACKS = Registry("attack")
register_attack = ATTACKS.register


@dataclass
class AttackResult:
    """The attacks' outcomes on one edit of one concept, with the judge that read them and what ran."""

    concept: str
    outcomes: list[Outcome]
    judge: dict[str, Any]

    def to_dict(self) -> dict:
        return {"concept": self.concept, "judge": self.judge, "attacks": [o.to_dict() for o in self.outcomes]}

    def table(self) -> str:
        """One line per attack: success on the edited model against the original's."""
        lines = [f"attack success for '{self.concept}' (share of images the judge reads as it):"]
        for o in self.outcomes:
            refs = "".join(f", {k} {v.value:.2f}" for k, v in o.references.items())
            keep = f"; worst kept {min(o.keep.values()):.2f}" if o.keep else ""
            lines.append(f"  {o.name:<8} edited {o.edited.value:.2f} (n={o.edited.n}), original {o.original.value:.2f}"
                         f"{refs}{keep}")
        return "\n".join(lines)


def attack(original, edited, concept: str, *, attacks: Sequence[str] = ("prompt", "token", "revival"),
           judge: Judge | str | Any = None, preserve: Sequence[str] | None = None, per_prompt: int = 2,
           options: dict[str, dict[str, Any]] | None = None, cache: dict | None = None) -> AttackResult:
    """Run `attacks` against the edited pipeline for `concept`; `options[name]` sets an attack's config; `cache`
    keeps the original model's reference results between calls on the same original model and concept."""
    options = options or {}
    unknown = [a for a in attacks if a not in ATTACKS]
    if unknown:
        raise BadInput(f"unknown attack {', '.join(map(repr, unknown))}; choose from {', '.join(ATTACKS)}")
    if int(per_prompt) != per_prompt or per_prompt < 1:
        raise BadInput(f"per_prompt (images per prompt) must be a positive integer, got {per_prompt}")
    world = world_of(original)
    keep = preserve
    if keep is None:
        if world is None:
            raise BadInput("the attacks need the concepts to keep on this model (preserve=[...], --preserve C ...)")
        keep = world.others([concept])
    judge = as_judge(judge, pipe=original)
    judge.check([concept, *keep])
    target = Target(original, edited, concept, list(keep), judge, world, int(per_prompt), {} if cache is None else cache)
    built = [ATTACKS.lookup(a)(make_config(ATTACKS.lookup(a).config_class, options.get(a, {}), f"attack {a}"))
             for a in attacks]
    for a in built:
        a.check(target)
    outcomes = []
    for a in built:
        started = time.perf_counter()
        outcome = a.run(target)
        outcome.seconds = time.perf_counter() - started
        outcomes.append(outcome)
    return AttackResult(concept, outcomes, judge.info())


from cadiff.attacks import prompts, token, revival  # noqa: E402,F401,I001  (register the three attacks, in this order)
from cadiff.attacks.defence import HardenConfig, harden  # noqa: E402,F401,I001  (the defence, above the attacks)
