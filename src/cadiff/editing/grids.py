"""Before/after image grids of an edit on fixed seeds, and the prompts they show.

Example:
    >>> grid = before_after_grid(pipe, result.pipeline, grid_prompts(["circle"]))     # doctest: +SKIP
"""

from __future__ import annotations

from typing import Sequence

from cadiff.models.generate import render
from cadiff.report.grids import image_grid, stack_grids
from cadiff.worlds import World, get_world

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
