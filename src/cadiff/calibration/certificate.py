"""What a calibrated erase proves: every setting it screened, the one it chose, and that edit measured again on
seeds no step of the search used (per concept: accuracy before and after with n and a 95 % interval), passed or
failed against the goal; with the frontier picture (target accuracy against the worst kept share).

Example:
    >>> result = cadiff.erase(pipe, "circle")                     # doctest: +SKIP
    >>> print(result.certificate.text())                          # doctest: +SKIP
    >>> result.certificate.passed                                 # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cadiff.calibration.probes import Rate
from cadiff.editing.measure import kept_shares

TOLERANCE = 1e-9


@dataclass(frozen=True)
class Goal:
    target: float = 0.05
    keep: float = 0.95

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


@dataclass
class Point:
    """One screened setting: its CAD options, what it zeroed, and the screening numbers."""

    order: int
    setting: dict[str, Any]
    zeroed: int
    target: dict[str, float]
    kept: dict[str, float]

    @property
    def target_max(self) -> float:
        return max(self.target.values())

    @property
    def kept_min(self) -> float:
        return min(self.kept.values()) if self.kept else 1.0

    @property
    def kept_min_concept(self) -> str | None:
        return min(self.kept, key=self.kept.get) if self.kept else None

    def label(self) -> str:
        s = self.setting
        rule = f", {s['preserve_rule']} rule" if s.get("preserve_rule") else ""
        rounds = f", {s['rounds']} rounds" if s["rounds"] > 1 else ""
        if s.get("round_ratios"):
            return f"{s['at_steps']} steps{rule}, {' + '.join(f'{r:g}' for r in s['round_ratios'])} per row{rounds}"
        return f"{s['at_steps']} steps{rule}, {s['ratio']:g} per row{rounds}"

    def to_dict(self) -> dict:
        return {"order": self.order, "setting": self.setting, "label": self.label(), "zeroed": self.zeroed,
                "target": self.target, "kept": self.kept, "target_max": self.target_max,
                "kept_min": self.kept_min, "kept_min_concept": self.kept_min_concept}


@dataclass
class Certificate:
    """The record of one calibrated erase (see the module); `passed`: the confirmation met the goal."""

    goal: Goal
    targets: list[str]
    keep: list[str]
    judge: dict[str, Any]
    tried: list[Point]
    chosen: int  # index into tried
    met_in_screening: bool
    before: dict[str, Rate]
    after: dict[str, Rate]
    probes: dict[str, Any]
    seconds: dict[str, float] = field(default_factory=dict)
    ties: list[dict] = field(default_factory=list)  # tied best settings screened again: their pooled numbers

    @property
    def point(self) -> Point:
        return self.tried[self.chosen]

    @property
    def kept(self) -> dict[str, float]:
        return kept_shares({c: r.value for c, r in self.before.items()}, {c: r.value for c, r in self.after.items()},
                           self.keep)

    @property
    def target_max(self) -> float:
        return max(self.after[t].value for t in self.targets)

    @property
    def kept_min(self) -> float:
        return min(self.kept.values()) if self.keep else 1.0

    @property
    def passed(self) -> bool:
        return self.goal.meets(self.target_max, self.kept_min)

    def misses(self) -> list[str]:
        """What falls short of the goal on the confirmation images, worst first."""
        out = [(self.after[t].value - self.goal.target, f"{t} still judged present in {self.after[t].value:.0%}")
               for t in self.targets if self.after[t].value > self.goal.target + TOLERANCE]
        out += [(self.goal.keep - k, f"{c} keeps {k:.0%} of its accuracy")
                for c, k in self.kept.items() if k < self.goal.keep - TOLERANCE]
        return [text for _, text in sorted(out, reverse=True)]

    def to_dict(self) -> dict:
        return {
            "goal": {"target": self.goal.target, "keep": self.goal.keep},
            "passed": self.passed, "misses": self.misses(), "targets": self.targets, "keep": self.keep,
            "judge": self.judge, "setting": self.point.setting, "chosen": self.point.to_dict(),
            "met_in_screening": self.met_in_screening,
            "confirmation": {
                "concepts": {c: {"before": self.before[c].to_dict(), "after": self.after[c].to_dict(),
                                 **({"kept": round(self.kept[c], 4)} if c in self.kept else {})}
                             for c in [*self.targets, *self.keep]},
                "target_max": self.target_max, "kept_min": self.kept_min},
            "probes": self.probes, "tried": [p.to_dict() for p in self.tried], "tie_break": self.ties,
            "seconds": self.seconds,
        }

    def text(self) -> str:
        """The certificate as a person reads it."""
        n = self.probes["confirm"]["images"]
        lines = [f"calibrated erase of {', '.join(self.targets)}: "
                 + ("PASSED" if self.passed else "NOT MET")
                 + f" (goal: target <= {self.goal.target:.0%}, every kept concept >= {self.goal.keep:.0%} of its "
                   f"accuracy; judge: {self.judge.get('judge')})",
                 f"  setting: {self.point.label()} ({self.point.zeroed} weights zeroed), chosen after "
                 f"{len(self.tried)} screened settings" + ("" if self.met_in_screening else
                                                           ", none of which met the goal: the best point reached"),
                 f"  confirmed on {n} new images:"]
        if self.ties:
            lines.insert(2, f"  {len(self.ties)} settings tied as the best point; screened again on "
                            f"{self.ties[0]['images']} more images, chosen on the pooled counts")
        for c in [*self.targets, *self.keep]:
            b, a = self.before[c], self.after[c]
            lo, hi = a.interval()
            kept = f", kept {self.kept[c]:.0%}" if c in self.kept else " (target)"
            lines.append(f"    {c:<12} {b.value:.2f} -> {a.value:.2f}  (n={a.n}, 95% CI {lo:.2f}-{hi:.2f}){kept}")
        for miss in self.misses():
            lines.append(f"  misses: {miss}")
        return "\n".join(lines)

    def plot(self, path: str | Path) -> Path:
        """The frontier picture: every screened setting's target accuracy against its worst kept share, the goal
        region shaded, the chosen point and its confirmation marked."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6.4, 4.6), dpi=100)
        ax.axvspan(self.goal.keep, 1.02, ymax=(self.goal.target + 0.02) / 1.04, color="#d8f0d8",
                   label="goal")
        xs, ys = [p.kept_min for p in self.tried], [p.target_max for p in self.tried]
        ax.plot(xs, ys, "o", color="#4c72b0", label="screened settings")
        for p in self.tried:
            ax.annotate(str(p.order), (p.kept_min, p.target_max), textcoords="offset points", xytext=(4, 3),
                        fontsize=8)
        ax.plot([self.point.kept_min], [self.point.target_max], "*", ms=16, color="#dd8452", label="chosen (screening)")
        ax.plot([self.kept_min], [self.target_max], "D", ms=8, color="#c44e52", label="chosen (confirmation)")
        ax.set_xlim(min(0.0, *xs) - 0.02, 1.02)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("worst kept share of accuracy (concepts to keep)")
        ax.set_ylabel("target accuracy (judged present)")
        ax.set_title(f"calibrated erase of {', '.join(self.targets)}: "
                     + ("passed" if self.passed else "goal not met"), fontsize=10)
        ax.legend(loc="upper left", fontsize=8)
        fig.tight_layout()
        fig.savefig(path)
        plt.close(fig)
        return Path(path)
