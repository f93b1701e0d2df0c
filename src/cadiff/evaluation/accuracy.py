"""The one accuracy engine: a concept's accuracy on an image set is the share of the images whose prompt names it
that a judge says show it. The erase reports, the calibrated erase's screening and confirmation, the hardening and
the attacks all count through `judge_rates`.

A probe is a list of (prompt, seed) with the concepts each prompt names. On a model of a world (the embedded
shapes model) it is the world's balanced design (`repeats` times: each shape and colour named 6 times a repeat,
each texture 12), plus `extra` captions naming each target; elsewhere each concept's own prompt, 12 per repeat
(+ `extra` for a target).

Example:
    >>> Rate(0, 24).interval()
    (0.0, 0.138)
    >>> from cadiff.evaluation.accuracy import measure_edit
    >>> result = cadiff.erase(pipe, "circle", cadiff.CADConfig(components="linear", seeds=16))   # doctest: +SKIP
    >>> m = measure_edit(pipe, result, repeats=2)                                 # doctest: +SKIP
    >>> m["target_after"], m["kept_min"]                                          # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from cadiff.attribution import concept_prompt
from cadiff.editing.ablate import ablated
from cadiff.errors import BadInput
from cadiff.evaluation.stats import wilson
from cadiff.models.generate import render
from cadiff.worlds import World, get_world, world_of

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


def judge_rates(images: np.ndarray, probe: Probe, judge, concepts: Sequence[str],
                others: Sequence[str] | None = None) -> dict[str, Rate]:
    """Per concept, how many of the images whose prompt names it the judge says show it, told apart from
    `others` (default: the other `concepts`)."""
    out = {}
    for c in concepts:
        idx = [i for i, named in enumerate(probe.names) if c in named]
        others_c = [x for x in (concepts if others is None else others) if x != c]
        hits = int(np.asarray(judge.present(images[idx], c, others_c), dtype=bool).sum()) if idx else 0
        out[c] = Rate(hits, len(idx))
    return out


def measure(pipe, probe: Probe, judge, concepts: Sequence[str], mask=None, **sampling) -> dict[str, Rate]:
    """The rates of `concepts` on `probe`'s images from `pipe`, with `mask` zeroed if given (`sampling`: render's
    steps, guidance, batch_size, progress)."""
    with ablated(pipe, mask) if mask is not None else contextlib.nullcontext():
        images = render(pipe, probe.prompts, probe.seeds, **sampling)
    return judge_rates(images, probe, judge, concepts)


def _world(pipe, world: World | None) -> World:
    world = world or world_of(pipe)
    if world is None:
        raise BadInput("this model belongs to no world with a judge (only the embedded shapes model does), so "
                       "its concept accuracies cannot be measured here; use `cadiff evaluate` with --metrics")
    return world


def evaluation_prompts(repeats: int = 1, world: World | None = None) -> list[str]:
    """The prompts of the world's balanced design (default: the shapes world's 36 per repeat)."""
    return [p for p, _ in (world or get_world("shapes")).design(repeats)]


def concept_accuracies(pipe, judge=None, repeats: int = 1, seed: int = 1000, batch_size: int = 64,
                       progress: Callable[[int], None] | None = None, world: World | None = None) -> dict[str, float]:
    """Accuracy of every concept of the pipeline's world on its balanced design (`repeats` times, seeds seed,
    seed+1, ...), judged by `judge` (a Judge; default: the world's)."""
    from cadiff.evaluation.judges import WorldJudge

    world = _world(pipe, world)
    probe = make_probe(pipe, world, [], [], repeats=repeats, extra=0, seed=seed)
    rates = measure(pipe, probe, judge or WorldJudge(world=world), world.concepts(), batch_size=batch_size,
                    progress=progress)
    return {c: r.value for c, r in rates.items()}


def kept_shares(before: dict[str, float], after: dict[str, float], keep: Sequence[str]) -> dict[str, float]:
    """after / before per concept to keep (1.0 where it was never judged present: nothing to lose)."""
    return {c: (after[c] / before[c] if before[c] > 0 else 1.0) for c in keep}


def edit_metrics(before: dict[str, float], after: dict[str, float], targets: Sequence[str]) -> dict:
    """Target accuracy before/after, and how much of its accuracy every other concept keeps (after / before)."""
    others = [c for c in before if c not in targets]
    kept = kept_shares(before, after, others)
    return {
        "target_before": float(np.mean([before[t] for t in targets])),
        "target_after": float(np.mean([after[t] for t in targets])),
        "others_before": float(np.mean([before[c] for c in others])) if others else None,
        "others_after": float(np.mean([after[c] for c in others])) if others else None,
        "kept_min": min(kept.values()) if kept else None,
        "kept_min_concept": min(kept, key=kept.get) if kept else None,
        "before": before, "after": after,
    }


def measure_edit(pipe, result, repeats: int = 1, judge=None, world: World | None = None,
                 progress: Callable[[str, int], Callable[[int], None]] | None = None) -> dict:
    """Edit metrics of an EditResult on the pipeline's world (`edit_metrics`, plus `n_images`), and with more than
    one round the metrics after every round (`rounds`: round, zeroed, its mask file, target / kept after it).
    `progress(label, total)` may return a per-image callback for each measurement."""
    from cadiff.evaluation.judges import WorldJudge

    world = _world(pipe, world)
    judge = judge or WorldJudge(world=world)
    n = len(world.design(repeats))

    def measure(model, label: str) -> dict[str, float]:
        tick = progress(label, n) if progress is not None else None
        return concept_accuracies(model, judge, repeats=repeats, progress=tick, world=world)

    before = measure(pipe, "before")
    metrics = {**edit_metrics(before, measure(result.pipeline, "after"), result.concepts), "n_images": n}
    if len(result.rounds) > 1:
        metrics["rounds"] = []
        for k, mask in sorted(result.rounds.items()):
            last = k == len(result.rounds)  # the last round is the edited model just measured
            with ablated(pipe, mask) if not last else contextlib.nullcontext():
                after = metrics["after"] if last else measure(pipe, f"round {k}")
            m = edit_metrics(before, after, result.concepts)
            metrics["rounds"].append(
                {"round": k, "zeroed": len(mask), "mask": "mask.safetensors" if last else f"mask.round{k}.safetensors",
                 **{key: m[key] for key in ("target_after", "others_after", "kept_min", "kept_min_concept", "after")}})
    return metrics
