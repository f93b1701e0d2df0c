"""What a calibrated erase proves: every setting it screened, the one it chose, and that edit measured again on
seeds no step of the search used, by the search's judge and an independent one (per concept and judge: accuracy
before and after with n and a one-sided confidence bound, see `cadiff.calibration.confirm`), proven, met on point
estimates only, or missed against the goal; with the frontier picture (target accuracy against the worst kept
share).

Example:
    >>> result = cadiff.erase(pipe, "circle")                     # doctest: +SKIP
    >>> print(result.certificate.text())                          # doctest: +SKIP
    >>> result.certificate.passed                                 # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cadiff.calibration.confirm import MET, MISSED, PROVEN, Confirmation
from cadiff.editing.goal import Goal
from cadiff.evaluation.accuracy import Rate, kept_shares

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
    """The record of one calibrated erase (see the module). `outcome`: "proven" (every goal claim of every judge
    proven by its one-sided bound, and the judges are at least two), "met" (the point estimates meet the goal, the
    bounds do not all clear), "missed"; `passed`: proven."""

    goal: Goal
    targets: list[str]
    keep: list[str]
    judges: list[dict[str, Any]]  # each judge's info; the first is the search's
    tried: list[Point]
    chosen: int  # index into tried
    met_in_screening: bool
    confirmation: Confirmation
    probes: dict[str, Any]
    seconds: dict[str, float] = field(default_factory=dict)
    ties: list[dict] = field(default_factory=list)  # tied best settings screened again: their pooled numbers

    @property
    def point(self) -> Point:
        return self.tried[self.chosen]

    @property
    def judge(self) -> dict[str, Any]:
        return self.judges[0]

    @property
    def independent(self) -> bool:
        """Confirmed by a judge besides the one the search optimised against."""
        return len(self.judges) > 1

    def _rates(self, when: str) -> dict[str, Rate]:
        return next(iter(self.confirmation.rates.values()))[when]

    @property
    def before(self) -> dict[str, Rate]:
        """The search's judge's counts on every confirmation image, before the edit."""
        return self._rates("before")

    @property
    def after(self) -> dict[str, Rate]:
        return self._rates("after")

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
    def outcome(self) -> str:
        outcome = self.confirmation.outcome
        return MET if outcome == PROVEN and not self.independent else outcome

    @property
    def passed(self) -> bool:
        return self.outcome == PROVEN

    def misses(self) -> list[str]:
        """What falls short of the goal on the confirmation images (point estimates), worst first."""
        out = []
        for c in self.confirmation.claims:
            if c.meets and c.status != "refuted":
                continue
            if c.kind == "target":
                out.append((c.value - c.goal, f"{c.concept} still judged present in {c.value:.0%} ({c.judge})"))
            else:
                out.append((c.goal - c.value, f"{c.concept} keeps {c.value:.0%} of its accuracy ({c.judge})"))
        return [text for _, text in sorted(out, reverse=True)]

    def unproven(self) -> list[str]:
        """Why a certificate whose point estimates meet the goal is not proven, and what would prove it."""
        out = [] if self.independent else ["one judge only, the one the search optimised against: give a second, "
                                           "independent one (second_judge=, --second-judge)"]
        for c in self.confirmation.open():
            what = (f"rate <= {c.bound:.3f}" if c.kind == "target" else f"kept >= {c.bound:.3f}")
            more = f"; about {c.needed} images naming it at this rate would prove it" if c.needed else ""
            out.append(f"{c.concept} ({c.judge}): {what} on n={c.after.n}{more}")
        return out

    @property
    def confidence(self) -> float:
        return 1 - self.confirmation.alpha

    def to_dict(self) -> dict:
        return {
            "goal": {"target": self.goal.target, "keep": self.goal.keep},
            "outcome": self.outcome, "passed": self.passed, "confidence": round(self.confidence, 6),
            "misses": self.misses(), "unproven": self.unproven() if self.outcome == MET else [],
            "targets": self.targets, "keep": self.keep,
            "judge": self.judge, "judges": self.judges, "independent": self.independent,
            "setting": self.point.setting, "chosen": self.point.to_dict(),
            "met_in_screening": self.met_in_screening,
            "confirmation": {
                "concepts": {c: {"before": self.before[c].to_dict(), "after": self.after[c].to_dict(),
                                 **({"kept": round(self.kept[c], 4)} if c in self.kept else {})}
                             for c in [*self.targets, *self.keep]},
                "target_max": self.target_max, "kept_min": self.kept_min, **self.confirmation.to_dict(),
                "outcome": self.outcome},
            "probes": self.probes, "tried": [p.to_dict() for p in self.tried], "tie_break": self.ties,
            "seconds": self.seconds,
        }

    def text(self) -> str:
        """The certificate as a person reads it."""
        conf = self.confirmation
        verdict = {PROVEN: "PROVEN", MET: "MET, NOT PROVEN", MISSED: "MISSED"}[self.outcome]
        lines = [f"calibrated erase of {', '.join(self.targets)}: {verdict} (goal: target <= {self.goal.target:.0%}, "
                 f"every kept concept >= {self.goal.keep:.0%} of its accuracy; proven at {self.confidence:.0%} "
                 f"confidence; judges: {', '.join(c for c in dict.fromkeys(x.judge for x in conf.claims))})",
                 f"  setting: {self.point.label()} ({self.point.zeroed} weights zeroed), chosen after "
                 f"{len(self.tried)} screened settings" + ("" if self.met_in_screening else
                                                           ", none of which met the goal: the best point reached"),
                 f"  confirmed on {conf.images} new images in {conf.looks} look(s) of at most {conf.looks_planned} "
                 f"(error {conf.alpha:g} spent as {conf.alpha_per_look:.4g} a look, each bound one-sided at that "
                 "look's error; proven = every claim of every judge clears its bound):"]
        if self.ties:
            lines.insert(2, f"  {len(self.ties)} settings tied as the best point; screened again on "
                            f"{self.ties[0]['images']} more images, chosen on the pooled counts")
        for c in conf.claims:
            bound = (f"rate <= {c.bound:.3f}" if c.kind == "target" else f"kept >= {c.bound:.3f}")
            role = "target" if c.kind == "target" else f"kept {c.value:.0%}"
            lines.append(f"    {c.concept:<12} {c.judge:<16} {c.before.value:.2f} -> {c.after.value:.2f}  "
                         f"(n={c.after.n}, {bound}) {role}: {c.status}")
        for miss in self.misses():
            lines.append(f"  misses: {miss}")
        if self.outcome == MET:
            lines += [f"  not proven: {why}" for why in self.unproven()]
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
        ax.set_title(f"calibrated erase of {', '.join(self.targets)}: {self.outcome}", fontsize=10)
        ax.legend(loc="upper left", fontsize=8)
        fig.tight_layout()
        fig.savefig(path)
        plt.close(fig)
        return Path(path)
