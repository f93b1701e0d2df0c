"""Sampling steps by name: index 0 is the first step (t = 1.0), N-1 the last (t = 0.0); windows are the paper's stages.

Used wherever a request names steps: SAE capture and steering, and the steps a CAD objective sums over.

Example:
    >>> from cadiff.models.steps import resolve_steps
    >>> resolve_steps("first,mid,last", 25), resolve_steps("early", 25)
    ([0, 12, 24], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
"""

from __future__ import annotations

from typing import Sequence

from cadiff.errors import BadInput

# The paper's stages as ranges of t = 1 - step / (N - 1): early [0.6, 1], middle [0.2, 0.6), final [0, 0.2).
WINDOWS: dict[str, tuple[float, float]] = {"early": (0.6, 1.0), "middle": (0.2, 0.6), "final": (0.0, 0.2)}


def step_time(step: int, num_steps: int) -> float:
    """The normalised time t of a sampling step: 1.0 at the first step, 0.0 at the last."""
    return 1.0 if num_steps == 1 else 1.0 - step / (num_steps - 1)


def window_steps(window: str, num_steps: int) -> list[int]:
    """The steps of a named window ('early', 'middle', 'final'); 'final' includes t = 0, 'early' t = 1."""
    if window not in WINDOWS:
        raise BadInput(f"unknown window '{window}'; use one of {', '.join(WINDOWS)} or explicit steps like 0,1,2")
    lo, hi = WINDOWS[window]
    steps = [s for s in range(num_steps) if lo <= step_time(s, num_steps) < hi or (hi == 1.0 and s == 0)]
    return steps


def resolve_steps(spec: str | Sequence[int], num_steps: int) -> list[int]:
    """Steps named by `spec`: 'all', windows 'early'/'middle'/'final', single steps 'first'/'mid'/'last', integers."""
    if isinstance(spec, str):
        steps: list[int] = []
        for part in [p.strip() for p in spec.split(",") if p.strip()]:
            if part == "all":
                steps += list(range(num_steps))
            elif part in WINDOWS:
                steps += window_steps(part, num_steps)
            elif part == "first":
                steps.append(0)
            elif part == "mid":
                steps.append((num_steps - 1) // 2)
            elif part == "last":
                steps.append(num_steps - 1)
            elif part.lstrip("-").isdigit():
                steps.append(int(part))
            else:
                raise BadInput(f"cannot read step '{part}'; use all, early, middle, final, first, mid, last or integers")
    else:
        steps = [int(s) for s in spec]
    bad = [s for s in steps if not 0 <= s < num_steps]
    if bad:
        raise BadInput(f"step(s) {bad} outside the schedule of {num_steps} steps; use steps 0..{num_steps - 1}")
    if not steps:
        raise BadInput("no steps selected; give e.g. 'first,mid,last' or '0,12,24'")
    return sorted(set(steps))
