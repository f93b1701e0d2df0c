"""The confirmation of a calibrated erase: the chosen edit measured on seeds no step of the search used, by every
judge given, each goal claim proven by a one-sided confidence bound, images added only while a claim is undecided.

Claims, one per (judge, concept):
- a target's: its rate after the edit is at most the goal's (`goal.target`); proven when the exact one-sided
  upper bound on the rate is at or below it, refuted when the lower bound is above it;
- a kept concept's: its kept share (after / before, the same prompts and seeds) is at least `goal.keep`; proven
  when the lower bound on after over the upper bound on before (each at half the look's error) is at or above it,
  refuted when the upper bound over the lower bound is below it.

Looks: the probes are looked at in order (the design `confirm_repeats` times, then as many again, doubling up to
`confirm_max_repeats`); a look adds images only while a claim is undecided and none is refuted (a refuted claim is a
miss whatever comes), images before the edit only while a kept concept's claim is open, and a decided claim keeps
the counts it was decided on. The error `alpha` = 1 - confidence is spent evenly over the looks planned (alpha / looks each, a
Bonferroni spending rule), so looking again never inflates it: each claim is wrong with probability at most alpha.
Many claims at once: the certificate is PROVEN only when every claim of every judge is proven, an intersection-union
test, whose error is at most alpha without splitting it across claims (each claim alone being a level-alpha test);
the per-claim bounds are each a (1 - alpha) bound, not simultaneous ones.

Outcomes: "proven" (every claim proven by every judge), "met" (every point estimate meets the goal, not every bound
clears: `images_to_prove` says about how many images a claim needs at its rate), "missed".

Example:
    >>> confirmation = confirm(pipe, mask, [judge, second], goal, ["circle"], keep, probes, alpha=0.05)   # doctest: +SKIP
    >>> confirmation.outcome, [c.to_dict() for c in confirmation.open()]                                  # doctest: +SKIP
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

from cadiff.evaluation.accuracy import Probe, Rate, judge_rates
from cadiff.editing.ablate import ablated
from cadiff.evaluation.stats import lower_bound, upper_bound
from cadiff.models.generate import render

TOLERANCE = 1e-9
PROVEN, MET, MISSED = "proven", "met", "missed"


@dataclass
class Claim:
    """One goal claim of one judge about one concept, with the counts it stands on."""

    judge: str
    concept: str
    kind: str  # "target" or "keep"
    goal: float
    before: Rate = Rate(0, 0)
    after: Rate = Rate(0, 0)
    status: str = "open"  # "proven", "refuted" or "open"
    bound: float | None = None  # target: upper bound on the rate; keep: lower bound on the kept share
    look: int = 0
    needed: int | None = None  # an open claim: about how many images would prove it (`images_to_prove`)

    @property
    def value(self) -> float:
        """The point estimate: the target's rate, or the kept share (1 where never judged present before)."""
        if self.kind == "target":
            return self.after.value
        return self.after.value / self.before.value if self.before.value > 0 else 1.0

    @property
    def meets(self) -> bool:
        """The point estimate meets the goal."""
        if self.kind == "target":
            return self.value <= self.goal + TOLERANCE
        return self.value >= self.goal - TOLERANCE

    def bounds(self, alpha: float) -> tuple[float, float]:
        """(lower, upper) one-sided bounds at level 1 - alpha each on the rate, or on the kept share."""
        a, b = self.after, self.before
        if self.kind == "target":
            return lower_bound(a.hits, a.n, alpha), upper_bound(a.hits, a.n, alpha)
        b_up, b_lo = upper_bound(b.hits, b.n, alpha / 2), lower_bound(b.hits, b.n, alpha / 2)
        lo = lower_bound(a.hits, a.n, alpha / 2) / b_up if b_up > 0 else 1.0
        hi = upper_bound(a.hits, a.n, alpha / 2) / b_lo if b_lo > 0 else float("inf")
        return lo, hi

    def decide(self, alpha: float, look: int) -> None:
        """Prove or refute the claim at this look's error `alpha`, or leave it open."""
        lo, hi = self.bounds(alpha)
        self.look = look
        if self.kind == "target":
            self.bound = hi
            if hi <= self.goal + TOLERANCE:
                self.status = "proven"
            elif lo > self.goal + TOLERANCE:
                self.status = "refuted"
        else:
            self.bound = lo
            if lo >= self.goal - TOLERANCE:
                self.status = "proven"
            elif hi < self.goal - TOLERANCE:
                self.status = "refuted"

    def images_to_prove(self, alpha: float, limit: int = 1 << 16) -> int | None:
        """About how many images naming the concept would prove the claim at its present rate (at error `alpha`
        per look), to a factor of two; None when its point estimate does not meet the goal with room to spare (no
        number of images proves it) or would need more than `limit`."""
        if not self.meets or self.after.n == 0 or abs(self.value - self.goal) <= TOLERANCE:
            return None
        rate_after, rate_before = self.after.value, self.before.value
        n = max(self.after.n, 1)
        while n <= limit:
            probe = Claim(self.judge, self.concept, self.kind, self.goal,
                          Rate(round(rate_before * n), n), Rate(round(rate_after * n), n))
            probe.decide(alpha, 0)
            if probe.status == "proven":
                return n
            n *= 2
        return None

    def to_dict(self) -> dict:
        out = {"judge": self.judge, "concept": self.concept, "kind": self.kind, "goal": self.goal,
               "value": round(self.value, 4), "meets": self.meets, "status": self.status,
               "bound": None if self.bound is None else round(self.bound, 4), "look": self.look,
               "images_to_prove": self.needed, "after": {"hits": self.after.hits, "n": self.after.n}}
        if self.kind == "keep":
            out["before"] = {"hits": self.before.hits, "n": self.before.n}
        return out


@dataclass
class Confirmation:
    """Every claim of every judge, the looks taken, the images generated and the error spent per look."""

    claims: list[Claim]
    alpha: float
    looks_planned: int
    looks: int = 0
    images: int = 0
    seconds: list[float] = field(default_factory=list)  # each look's time: generating and judging its images
    rates: dict[str, dict[str, dict[str, Rate]]] = field(default_factory=dict)  # judge -> before/after -> concept

    @property
    def alpha_per_look(self) -> float:
        return self.alpha / self.looks_planned

    @property
    def outcome(self) -> str:
        """What the claims establish (a certificate adds whether its judges were independent)."""
        if all(c.status == "proven" for c in self.claims):
            return PROVEN
        if all(c.meets and c.status != "refuted" for c in self.claims):
            return MET
        return MISSED

    def open(self) -> list[Claim]:
        return [c for c in self.claims if c.status != "proven"]

    def to_dict(self) -> dict:
        return {"confidence": round(1 - self.alpha, 6), "alpha": self.alpha,
                "looks": self.looks, "looks_planned": self.looks_planned,
                "alpha_per_look": self.alpha_per_look, "images": self.images, "seconds": self.seconds,
                "multiplicity": "intersection-union: proven only when every claim of every judge is proven, each a "
                                "level-alpha test; alpha spent evenly over the planned looks",
                "claims": [c.to_dict() for c in self.claims]}


def confirm(pipe, mask, judges: Sequence, goal, targets: Sequence[str], keep: Sequence[str],
            probes: Sequence[Probe], alpha: float, sampling: dict | None = None,
            progress: Callable[[int], None] | None = None) -> Confirmation:
    """Confirm the edit `mask` on `probes` (looked at in order, see the module) with every judge of `judges`
    (objects with `present` and `info()`; the first is the search's)."""
    concepts = [*targets, *keep]
    labels = [judge_label(j) for j in judges]
    claims = [Claim(label, c, "target" if c in targets else "keep", goal.target if c in targets else goal.keep)
              for label in labels for c in concepts]
    out = Confirmation(claims, alpha, len(probes),
                       rates={label: {"before": {c: Rate(0, 0) for c in concepts},
                                      "after": {c: Rate(0, 0) for c in concepts}} for label in labels})
    sampling = sampling or {}
    for look, probe in enumerate(probes, 1):
        open_ = [c for c in claims if c.status == "open"]
        if not open_ or any(c.status == "refuted" for c in claims):  # all decided, or missed whatever comes
            break
        started = time.perf_counter()
        images = {"after": None, "before": None}
        with ablated(pipe, mask, check=False):
            images["after"] = render(pipe, probe.prompts, probe.seeds, progress=progress, **sampling)
        if look == 1 or any(c.kind == "keep" for c in open_):  # a target's claim needs no image before the edit
            images["before"] = render(pipe, probe.prompts, probe.seeds, progress=progress, **sampling)
        out.looks, out.images = look, out.images + len(probe)
        for judge, label in zip(judges, labels):
            seen = {when: judge_rates(x, probe, judge, concepts) for when, x in images.items() if x is not None}
            for when, rates in seen.items():
                for c in concepts:
                    out.rates[label][when][c] = out.rates[label][when][c] + rates[c]
            for claim in open_:
                if claim.judge != label:
                    continue
                if "before" in seen:
                    claim.before = claim.before + seen["before"][claim.concept]
                claim.after = claim.after + seen["after"][claim.concept]
                claim.decide(out.alpha_per_look, look)
        out.seconds.append(round(time.perf_counter() - started, 2))
    for claim in out.open():
        claim.needed = claim.images_to_prove(out.alpha_per_look)
    return out


def judge_label(judge) -> str:
    """A judge's name in a certificate: its registered name, with the function or world it wraps."""
    info = judge.info()
    extra = info.get("function") or info.get("world") or info.get("weights")
    return f"{info['judge']}:{extra}" if extra else info["judge"]


def look_probes(make, first: int, largest: int, seed: int) -> list[Probe]:
    """The probes of the looks: `make(repeats, seed)` for `first` repeats, then as many again, doubling the total
    up to `largest` repeats; each on seeds after the previous one's."""
    totals, total = [first], first
    while total < largest:
        total = min(total * 2, largest)
        totals.append(total)
    probes, done = [], 0
    for total in totals:
        probe = make(total - done, seed)
        probes.append(probe)
        seed += len(probe)
        done = total
    return probes
