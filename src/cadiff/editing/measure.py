"""How an edit measures on a model of a world (the embedded shapes model): per-concept accuracy before and after on
the world's balanced design, judged by the world's judge through its one accuracy engine; the numbers an edit is
judged by; what to try when it missed; which round of a multi-round erase to keep; before/after image grids.

Accuracy of a concept = the share of the design's images whose prompt names it and whose judged label for the
concept's attribute is it. An erase should take the target to ~0 while every other concept keeps its accuracy.

Example:
    >>> from cadiff.editing.measure import measure_edit
    >>> result = cadiff.erase(pipe, "circle", components="linear", seeds=16)      # doctest: +SKIP
    >>> m = measure_edit(pipe, result, repeats=2)                                 # doctest: +SKIP
    >>> m["target_after"], m["kept_min"], next_step(m, "erase", "linear")         # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
from typing import Callable, Sequence

import numpy as np

from cadiff.editing.ablate import ablated
from cadiff.errors import BadInput
from cadiff.models.generate import render
from cadiff.report.grids import image_grid, stack_grids
from cadiff.worlds import World, get_world, world_of

# The erase goal, written once: every target judged present in at most GOAL_TARGET of its images, every other
# concept keeping at least KEEP_GOAL of its accuracy (the calibrated erase's Goal and config, hardening)
GOAL_TARGET, KEEP_GOAL = 0.05, 0.95


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
    seed+1, ...), judged by `judge` (default: the world's)."""
    world = _world(pipe, world)
    design = world.design(repeats)
    prompts = [p for p, _ in design]
    images = render(pipe, prompts, [seed + i for i in range(len(prompts))], batch_size=batch_size,
                      progress=progress)
    return world.accuracy((judge or world.judge()).predict(images), [labels for _, labels in design])


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
    world = _world(pipe, world)
    judge = judge or world.judge()
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


def next_step(metrics: dict, objective: str, components: str, images: int = 0, at_steps: str = "all") -> str | None:
    """What to try when a measured edit missed: other concepts paid (>= 5 % lost), or an erase barely moved.

    `images`: how many evaluation images name the worst-kept concept (a loss of one image says little);
    `at_steps`: the steps the objective summed over (an erase over all of them is told of the early window).

    Example:
        >>> next_step({"target_before": 1.0, "target_after": 0.9, "kept_min": 1.0}, "erase", "ff")[:25]
        'the target barely moved: '
    """
    if metrics["kept_min"] < KEEP_GOAL:
        if images and 1.0 - metrics["kept_min"] <= 1.0 / images + 1e-9:
            return (f"{metrics['kept_min_concept']} changed in one image of {images}: measure on more images "
                    "(--eval-repeats 4) before changing the edit")
        early = ", or --at-steps early --rounds 2 --ratio 0.02" if objective == "erase" and at_steps == "all" else ""
        guard = (", or --preserve <the concepts to keep> --preserve-rule guard (on the embedded model "
                 "--preserve-others --preserve-rule guard, the most specific erase measured; docs/cad.md)")
        return f"another concept lost accuracy: try a smaller --ratio{early}{guard if objective == 'erase' else ''}"
    if objective == "erase" and metrics["target_after"] > 0.5 * metrics["target_before"]:
        more = "--components linear, " if components == "ff" else ""
        return (f"the target barely moved: try {more}--seeds 16 or --rounds 2 (on the embedded model "
                "`--components linear --seeds 16` is the measured setting; docs/cad.md)")
    return None


def best_round(rounds: list[dict], keep: float = KEEP_GOAL) -> dict | None:
    """Of an erase's per-round metrics, the round that keeps every other concept >= `keep` with the lowest target
    (fewest weights zeroed on ties); None if no round keeps them.

    Example:
        >>> best_round([{"round": 1, "target_after": 0.2, "kept_min": 1.0, "zeroed": 5},
        ...             {"round": 2, "target_after": 0.0, "kept_min": 0.8, "zeroed": 9}])["round"]
        1
    """
    kept = [r for r in rounds if r["kept_min"] >= keep - 1e-9]
    return min(kept, key=lambda r: (r["target_after"], r["zeroed"])) if kept else None


def grid_prompts(targets: Sequence[str], n: int = 8, world: World | None = None) -> list[str]:
    """Prompts for a before/after grid: n naming the targets, n naming other concepts of the same attributes."""
    world = world or get_world("shapes")
    per = max(1, n // len(targets))
    named = [p for t in targets for p in world.prompts_naming(t, per, seed=7)][:n]
    pool = [c for t in targets for c in world.concepts()
            if world.attribute_of(c) == world.attribute_of(t) and c not in targets]
    other = [world.prompts_naming(pool[i % len(pool)], 1, seed=7 + i)[0] for i in range(n)] if pool else []
    return named + other


def before_after_grid(before_pipe, after_pipe, prompts: Sequence[str], seed: int = 0, title: str = "after",
                      **sampling):
    """Two rows of images on the same seeds: the original model, then the edited one (`sampling`: generate's
    steps / guidance; unset ones are the model's)."""
    seeds = [seed + i for i in range(len(prompts))]
    rows = [image_grid(render(p, list(prompts), seeds, **sampling), cols=len(prompts))
            for p in (before_pipe, after_pipe)]
    return stack_grids(rows, titles=["before", title])
