"""The erase goal, written once, and what the measurements of an edit advise: what to try when it missed, which
round of a multi-round erase to keep.

Example:
    >>> GOAL_TARGET, KEEP_GOAL
    (0.05, 0.95)
"""

from __future__ import annotations

from dataclasses import dataclass

# The erase goal, written once: every target judged present in at most GOAL_TARGET of its images, every other
# concept keeping at least KEEP_GOAL of its accuracy (the calibrated erase's Goal and config, hardening)
GOAL_TARGET, KEEP_GOAL = 0.05, 0.95
TOLERANCE = 1e-9


@dataclass(frozen=True)
class Goal:
    """The erase goal: every target at most `target`, every concept to keep at least `keep` of its accuracy."""

    target: float = GOAL_TARGET
    keep: float = KEEP_GOAL

    def keeps(self, kept_min: float) -> bool:
        return kept_min >= self.keep - TOLERANCE

    def meets(self, target_max: float, kept_min: float) -> bool:
        return target_max <= self.target + TOLERANCE and self.keeps(kept_min)

    def distance(self, target_max: float, kept_min: float) -> float:
        """How far a point is from the goal: the target's excess plus the keep shortfall (0 inside it)."""
        return max(0.0, target_max - self.target) + max(0.0, self.keep - kept_min)

    def rank(self, target_max: float, kept_min: float) -> tuple[int, float]:
        """The choice among points, smallest first: those that meet the goal, then those that keep every concept
        by their target, then the rest by their distance to the goal."""
        if self.meets(target_max, kept_min):
            return (0, 0.0)
        if self.keeps(kept_min):
            return (1, target_max)
        return (2, self.distance(target_max, kept_min))




def next_step(metrics: dict, objective: str, components: str, images: int = 0, at_steps: str = "all") -> str | None:
    """What to try when a measured edit missed: other concepts paid (>= 5 % lost), or an erase barely moved.

    `images`: how many evaluation images name the worst-kept concept (a loss of one image says little);
    `at_steps`: the steps the objective summed over (an erase over all of them is told of the early window).

    Example:
        >>> next_step({"target_before": 1.0, "target_after": 0.9, "kept_min": 1.0}, "erase", "ff")[:25]
        'the target barely moved: '
    """
    if not Goal().keeps(metrics["kept_min"]):
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


def best_round(rounds: list[dict], goal: Goal = Goal()) -> dict | None:
    """Of an erase's per-round metrics, the round that keeps every other concept as `goal` asks with the lowest target
    (fewest weights zeroed on ties); None if no round keeps them.

    Example:
        >>> best_round([{"round": 1, "target_after": 0.2, "kept_min": 1.0, "zeroed": 5},
        ...             {"round": 2, "target_after": 0.0, "kept_min": 0.8, "zeroed": 9}])["round"]
        1
    """
    kept = [r for r in rounds if goal.keeps(r["kept_min"])]
    return min(kept, key=lambda r: (r["target_after"], r["zeroed"])) if kept else None
