"""How an edit of the embedded shapes model shows: evaluator accuracy per concept, before/after image grids.

Accuracy of a concept = the fraction of images whose evaluator label for the concept's attribute equals the
concept, over the prompts "a {colour} {texture} {shape}" of a balanced design that name it (fixed seeds). An erase should take the target to ~0 while every other concept keeps its accuracy.

Example:
    >>> from cadiff.editing.shapes_report import concept_accuracies, edit_metrics
    >>> before = concept_accuracies(pipe, evaluator, repeats=2)                 # doctest: +SKIP
    >>> after = concept_accuracies(edited, evaluator, repeats=2)                # doctest: +SKIP
    >>> edit_metrics(before, after, ["circle"])["target_after"]                 # doctest: +SKIP
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from cadiff.models.generate import generate
from cadiff.report.grids import image_grid, stack_grids
from cadiff.shapes.world import ATTRIBUTES, COLOURS, SHAPES, TEXTURES, attribute_of, full_caption

CONCEPTS: tuple[str, ...] = SHAPES + COLOURS + TEXTURES


def concept_prompts(concept: str, n: int, seed: int = 0) -> list[str]:
    """n full captions naming `concept`, the other attributes drawn at random (reproducible)."""
    attribute = attribute_of(concept)
    rng = np.random.default_rng([seed, CONCEPTS.index(concept)])
    prompts = []
    for _ in range(n):
        words = {a: values[rng.integers(len(values))] for a, values in ATTRIBUTES.items()}
        words[attribute] = concept
        prompts.append(full_caption(words["shape"], words["colour"], words["texture"]))
    return prompts


def evaluation_prompts(repeats: int = 1) -> list[str]:
    """Every (shape, colour) pair `repeats` times, textures cycled: per repeat each shape and colour is named 6
    times and each texture 12 times, so one image scores a concept of every attribute at once."""
    return [full_caption(shape, colour, TEXTURES[(i + j + r) % len(TEXTURES)])
            for r in range(repeats) for i, shape in enumerate(SHAPES) for j, colour in enumerate(COLOURS)]


def concept_accuracies(pipe, evaluator, repeats: int = 1, seed: int = 1000, batch_size: int = 64,
                       progress: Callable[[int], None] | None = None) -> dict[str, float]:
    """Evaluator accuracy of all 15 concepts: for each, the fraction of images whose prompt names it and whose
    label for its attribute equals it (`evaluation_prompts(repeats)`, seeds seed, seed+1, ...)."""
    prompts = evaluation_prompts(repeats)
    images = generate(pipe, prompts, [seed + i for i in range(len(prompts))], batch_size=batch_size,
                      progress=progress)
    predicted = evaluator.predict(images)
    out = {}
    for concept in CONCEPTS:
        attribute = attribute_of(concept)
        hits = [predicted[attribute][k] == concept for k, p in enumerate(prompts) if concept in p.split()]
        out[concept] = float(np.mean(hits))
    return out


def edit_metrics(before: dict[str, float], after: dict[str, float], targets: Sequence[str]) -> dict:
    """Target accuracy before/after, and how much of its accuracy every other concept keeps (after / before)."""
    others = [c for c in before if c not in targets]
    kept = {c: (after[c] / before[c] if before[c] > 0 else 1.0) for c in others}
    return {
        "target_before": float(np.mean([before[t] for t in targets])),
        "target_after": float(np.mean([after[t] for t in targets])),
        "others_before": float(np.mean([before[c] for c in others])) if others else None,
        "others_after": float(np.mean([after[c] for c in others])) if others else None,
        "kept_min": min(kept.values()) if kept else None,
        "kept_min_concept": min(kept, key=kept.get) if kept else None,
        "before": before, "after": after,
    }


def grid_prompts(targets: Sequence[str], n: int = 8) -> list[str]:
    """Prompts for a before/after grid: n naming the targets, n naming other concepts of the same attributes."""
    per = max(1, n // len(targets))
    named = [p for t in targets for p in concept_prompts(t, per, seed=7)][:n]
    pool = [c for t in targets for c in ATTRIBUTES[attribute_of(t)] if c not in targets]
    other = [concept_prompts(pool[i % len(pool)], 1, seed=7 + i)[0] for i in range(n)] if pool else []
    return named + other


def before_after_grid(before_pipe, after_pipe, prompts: Sequence[str], seed: int = 0, title: str = "after",
                      **sampling):
    """Two rows of images on the same seeds: the original model, then the edited one (`sampling`: generate's
    num_inference_steps / guidance_scale; unset ones are the model's)."""
    seeds = [seed + i for i in range(len(prompts))]
    rows = [image_grid(generate(p, list(prompts), seeds, **sampling), cols=len(prompts))
            for p in (before_pipe, after_pipe)]
    return stack_grids(rows, titles=["before", title])
