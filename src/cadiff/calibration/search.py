"""The calibrated erase: a fixed search over the settings that measurements on the embedded model showed matter,
screened on a small image set and stopped as soon as the goal holds, then confirmed on seeds no step of the
search used.

The search, cheapest first (`SEARCH`, `RATIOS`):
1. the target's own scores over the early steps, then over all steps, at 2 % and 3 % per row;
2. the scores less, per weight, the largest positive score of any concept to keep (the guard rule), early steps,
   at 2 % and 3 % per row, then up to 3 rounds (re-scored on the edited model) at the largest ratio that kept;
   a round that breaks a concept to keep is tried again at the next smaller ratio (same scores), and the rounds
   go on at that ratio;
3. the same with every score in shares of its concept's J (the relative rule), up to 2 rounds.
The ratios are the scale measured on the U-Net. Where a line's smallest ratio breaks a concept to keep while it
takes the target to half its accuracy or less (the edit works but is too large for this model, as on the MMDiT),
the line halves the ratio until the concepts hold, the target comes back above half, or the rule picks no weight;
its rounds go on from the ratio that held.
Round-1 scores are computed once per step window and re-selected at every ratio and rule: the guard and the
relative rule are folded from the same per-concept scores. Within a line a larger ratio or another round is
tried only while the concepts to keep held; a line ends when one falls below the goal.

Choice (on the screening numbers only): the first setting that meets the goal; if none does, the best point
reached: of the settings that kept every concept, the lowest target, else the one nearest the goal (target excess
plus keep shortfall); settings tied there are screened again on images of their own seeds (`tie_seed`) and chosen
on the pooled counts by the same rule, then by fewest weights zeroed.

Example:
    >>> result = calibrated_erase(pipe, "circle")                 # doctest: +SKIP
    >>> result.certificate.passed, result.mask                    # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from tqdm.auto import tqdm

from cadiff.attribution import Attribution, AttributionConfig, Concepts, attribute
from cadiff.attribution.keep_rules import KeepMaxima, fold_maxima, with_keep_rule
from cadiff.attribution.result import EmptySelectionError
from cadiff.calibration.certificate import Certificate, Point
from cadiff.editing.goal import Goal
from cadiff.calibration.config import CalibratedConfig, CalibrationConfig
from cadiff.calibration.confirm import confirm, judge_label, look_probes
from cadiff.evaluation.accuracy import Rate, make_probe, measure
from cadiff.editing.copies import edited_copy
from cadiff.editing.edit import edit
from cadiff.evaluation.accuracy import kept_shares
from cadiff.editing.methods import EditMethod, EditRequest, register_method
from cadiff.editing.methods.cad import CADConfig, add_selection, score_round
from cadiff.editing.result import EditResult
from cadiff.errors import BadInput
from cadiff.evaluation.judges import Judge, as_judge
from cadiff.io.files import write_json
from cadiff.worlds import world_of


@dataclass(frozen=True)
class Line:
    """One way of scoring: the steps the erase objective sums over, the preserve rule against the concepts to keep
    (None: the target's own scores) and how many rounds it may take."""

    at_steps: str
    rule: str | None = None
    rounds: int = 1


SEARCH = (Line("early"), Line("all"), Line("early", "guard", 3), Line("early", "relative", 2))
RATIOS = (0.02, 0.03)


@dataclass
class CalibratedEdit(EditResult):
    """An EditResult with the certificate of its calibration; `write` adds certificate.json and frontier.png."""

    certificate: Certificate | None = None

    def write(self, folder: str | Path, export: bool = True) -> None:
        super().write(folder, export=export)
        write_json(Path(folder) / "certificate.json", self.certificate.to_dict())
        self.certificate.plot(Path(folder) / "frontier.png")


@dataclass
class _Candidate:
    point: Point
    mask: Any
    rounds: dict
    attributions: list


@dataclass
class _Search:
    pipe: Any
    concepts: Concepts
    judge: Judge
    goal: Goal
    cal: CalibratedConfig
    screen: Any
    before: dict[str, float]
    on_point: Callable[[Point], None]
    progress: bool = True
    seconds: dict[str, float] = field(default_factory=lambda: {"attribution": 0.0, "selection": 0.0,
                                                               "judging": 0.0})
    points: list[Point] = field(default_factory=list)
    best: _Candidate | None = None
    found: bool = False
    ties: list[dict] = field(default_factory=list)
    _own: dict = field(default_factory=dict)
    _keep_max: dict = field(default_factory=dict)
    _tried: dict = field(default_factory=dict)  # order -> (candidate, screening rates)

    @contextlib.contextmanager
    def timed(self, what: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[what] += time.perf_counter() - start

    @property
    def targets(self) -> list[str]:
        return list(self.concepts.targets)

    @property
    def keep(self) -> list[str]:
        return list(self.concepts.keep)

    @property
    def sampling(self) -> dict[str, Any]:
        return {"steps": self.cal.steps, "guidance": self.cal.guidance}

    def done(self) -> bool:
        return self.found or len(self.points) >= self.cal.budget

    def config(self, line: Line, ratio: float, rounds: int = 1, ratios: tuple = ()) -> CADConfig:
        """CAD's settings of a point: `ratio` for `rounds` rounds, or one ratio per round when they differ."""
        if len(set(ratios)) > 1:
            return self.cal.cad(at_steps=line.at_steps, preserve_rule=line.rule or "mean", round_ratios=tuple(ratios))
        return self.cal.cad(at_steps=line.at_steps, preserve_rule=line.rule or "mean", ratio=ratio, rounds=rounds)

    def first_round(self, line: Line) -> list[Attribution]:
        """Round-1 scores of the targets for `line`, from per-concept scores computed once per step window."""
        settings = self.config(line, RATIOS[0]).attribution().with_options(preserve_rule="mean")
        with self.timed("attribution"):
            if line.at_steps not in self._own:
                self._own[line.at_steps] = attribute(self.pipe, self.concepts.pick(self.targets), settings,
                                                     progress=self.progress)
            own = self._own[line.at_steps]
            if line.rule is None:
                return own
            if line.at_steps not in self._keep_max:
                self._keep_max[line.at_steps] = keep_maxima(self.pipe, self.concepts, settings, self.progress)
            return [with_keep_rule(a, self._keep_max[line.at_steps], line.rule) for a in own]

    def try_point(self, line: Line, cfg: CADConfig, mask, rounds: dict, attrs: list) -> Point:
        with self.timed("judging"), _bar(self.progress, len(self.screen),
                                         f"setting {len(self.points) + 1}/{self.cal.budget}: screening") as bar:
            after = measure(self.pipe, self.screen, self.judge, self.concepts.all, mask=mask, progress=bar.update,
                            **self.sampling)
        values = {c: r.value for c, r in after.items()}
        setting = {"at_steps": line.at_steps, "preserve_rule": line.rule, "ratio": cfg.ratio, "rounds": cfg.rounds}
        if cfg.round_ratios:
            setting["round_ratios"] = list(cfg.round_ratios)
        point = Point(len(self.points) + 1, setting, len(mask), {t: values[t] for t in self.targets},
                      kept_shares(self.before, values, self.keep))
        self.points.append(point)
        candidate = _Candidate(point, mask, dict(rounds), attrs)
        self._tried[point.order] = (candidate, after)
        if self.best is None or self._rank(point) < self._rank(self.best.point):
            self.best = candidate
        self.found = self.goal.meets(point.target_max, point.kept_min)
        self.on_point(point)
        return point

    def _rank(self, p: Point) -> tuple:
        """The goal's rank, then the first screened among those that meet it, else the fewest weights zeroed."""
        rank = self.goal.rank(p.target_max, p.kept_min)
        return (*rank, p.order if rank[0] == 0 else p.zeroed)

    def break_ties(self, probe, before: dict[str, Rate]) -> None:
        """When no setting met the goal and the best point ties with others on the screening numbers, screen the
        tied ones again on `probe` (seeds of its own) and choose among them on the pooled counts, by the same
        rule; each tied setting's pooled numbers go to `ties`."""
        if self.found or self.best is None:
            return
        tied = [p for p in self.points if self._rank(p)[:2] == self._rank(self.best.point)[:2]]
        if len(tied) < 2:
            return
        with self.timed("judging"):
            base = measure(self.pipe, probe, self.judge, self.concepts.all, **self.sampling)
            pooled_before = {c: (before[c] + base[c]).value for c in self.keep}
            ranked = []
            for p in tied:
                candidate, rates = self._tried[p.order]
                again = measure(self.pipe, probe, self.judge, self.concepts.all, mask=candidate.mask, **self.sampling)
                values = {c: (rates[c] + again[c]).value for c in [*self.targets, *self.keep]}
                both = Point(p.order, p.setting, p.zeroed, {t: values[t] for t in self.targets},
                             kept_shares(pooled_before, values, self.keep))
                self.ties.append({"order": p.order, "label": p.label(), "target_max": both.target_max,
                                  "kept_min": both.kept_min, "kept_min_concept": both.kept_min_concept,
                                  "images": len(probe)})
                ranked.append((self._rank(both)[:2] + (p.zeroed, p.order), candidate))
        self.best = min(ranked, key=lambda r: r[0])[1]

    def keeps(self, p: Point) -> bool:
        return self.goal.keeps(p.kept_min)

    @staticmethod
    def select(mask, attrs: list, cfg: CADConfig, k: int = 1):
        """`mask` with round k's selection added; None when the rule picks no weight."""
        try:
            return add_selection(mask, attrs, cfg, "erase", k)
        except EmptySelectionError:
            return None

    def run_line(self, line: Line) -> None:
        if self.done():
            return
        attrs = self.first_round(line)
        held, first = None, None
        for ratio in RATIOS:
            if self.done():
                return
            point, mask = self.screen_ratio(line, attrs, ratio)
            if point is None:  # this ratio picks no weight on this model's rows: try the next
                continue
            first = first or point
            if self.found or not self.keeps(point):
                break
            held = (ratio, mask)
        if held is None and first is not None and self.overshot(first):
            held = self.descend(line, attrs, first.setting["ratio"])
        if held is None or line.rounds == 1 or self.found:
            return
        ratio, mask = held
        self.run_rounds(line, [r for r in RATIOS if r <= ratio][::-1] or [ratio], mask)

    def screen_ratio(self, line: Line, attrs: list, ratio: float) -> tuple[Point | None, Any]:
        """Round 1 of `line` at `ratio`, screened; (None, None) when the rule picks no weight."""
        cfg = self.config(line, ratio)
        with self.timed("selection"):
            mask = self.select(None, attrs, cfg)
        if mask is None:
            return None, None
        return self.try_point(line, cfg, mask, {1: mask}, attrs), mask

    def overshot(self, p: Point) -> bool:
        """The edit broke a concept to keep while it took every target to half its accuracy or less: it works on the
        target but is too large for this model."""
        return not self.keeps(p) and all(p.target[t] <= self.before[t] / 2 for t in self.targets)

    def descend(self, line: Line, attrs: list, ratio: float) -> tuple[float, Any] | None:
        """Halve `ratio` while the edit overshoots; (ratio, mask) of the first that keeps every concept, None when
        none does (the target came back above half, the rule picks no weight, or the budget ran out)."""
        while not self.done():
            ratio /= 2
            point, mask = self.screen_ratio(line, attrs, ratio)
            if point is None or self.found:
                return None
            if self.keeps(point):
                return ratio, mask
            if not self.overshot(point):
                return None
        return None

    def run_rounds(self, line: Line, ratios: list[float], mask) -> None:
        """Rounds 2.. of `line` from round 1's `mask`, at `ratios[0]`; when a round breaks a concept to keep, the
        same round (same scores) is tried at the next smaller ratio, and the rounds go on at that one."""
        rounds, used = {1: mask}, [ratios[0]]
        k, attrs = 2, None
        while k <= line.rounds and ratios and not self.done():
            cfg = self.config(line, ratios[0], k, (*used, ratios[0]))
            if attrs is None:
                with self.timed("attribution"):
                    concepts = self.concepts if line.rule else self.concepts.pick(self.targets)
                    attrs = score_round(self.pipe, concepts, cfg, objective="erase", mask=mask,
                                        progress=self.progress)
            with self.timed("selection"):
                new = self.select(mask, attrs, cfg, k)
            if new is None:
                return
            point = self.try_point(line, cfg, new, {**rounds, k: new}, attrs)
            if self.found:
                return
            if self.keeps(point):
                mask, rounds[k], k, attrs = new, new, k + 1, None
                used.append(ratios[0])
            else:
                ratios = ratios[1:]


def keep_maxima(pipe, concepts: Concepts, settings: AttributionConfig, progress: bool = False) -> KeepMaxima:
    """Per weight, the largest positive score of any of `concepts`' concepts to keep, as such and in shares of each
    concept's J (the guard and the relative rule), scoring one concept at a time: what `attribute(...,
    preserve=keep)` folds."""
    return fold_maxima(attribute(pipe, concepts.pick([c]), settings, progress=progress)[0] for c in concepts.keep)


@register_method
class CalibratedErase(EditMethod):
    """The calibrated erase (see the module): CAD at the setting the search finds, confirmed on new seeds, with its
    certificate. Its judges: `judge` (default: the world's) and an independent `second_judge` (default: the world's
    pixel reader where there is one); concepts to keep default to a world's other concepts."""

    name = "calibrated"
    summary = "the calibrated erase: CAD at the setting a search finds against a goal, with a certificate (default)"
    config_class = CalibratedConfig
    default_for = ("erase",)
    keeps_world = True
    judged = True

    def judges(self, pipe, concepts: Concepts, judge: Any, second_judge: Any) -> tuple[Judge, ...]:
        first = as_judge(judge, pipe=pipe)
        judges = (first, *second_judges(pipe, world_of(pipe), second_judge))
        if len({judge_label(j) for j in judges}) < len(judges):
            raise BadInput(f"the second judge is the first one again ({judge_label(first)}): give an independent "
                           "one (another model, or another function), or none")
        for j in judges:
            j.check(concepts.all)
        return judges

    def run(self, pipe, request: EditRequest) -> CalibratedEdit:
        started = time.perf_counter()
        cal, concepts, world = self.config, request.concepts, world_of(pipe)
        targets, keep = list(concepts.targets), list(concepts.keep)
        goal = Goal(cal.goal_target, cal.goal_keep)

        def probe(repeats: int, seed: int, extra: int = 0):
            return make_probe(pipe, world, targets, keep, repeats=repeats, extra=extra, seed=seed)

        screen = probe(cal.screen_repeats, cal.screen_seed, cal.screen_extra)
        ties = probe(cal.screen_repeats, cal.tie_seed, cal.screen_extra)
        looks = look_probes(probe, cal.confirm_repeats, cal.confirm_max_repeats, cal.confirm_seed)
        _check_seeds(screen.seeds + ties.seeds, [s for look in looks for s in look.seeds], cal.seed_list())
        sampling = {"steps": cal.steps, "guidance": cal.guidance}
        judge = request.judges[0]

        judging = time.perf_counter()
        before_rates = measure(pipe, screen, judge, concepts.all, **sampling)
        before = {c: r.value for c, r in before_rates.items()}
        search = _Search(pipe, concepts, judge, goal, cal, screen, before, request.step, request.progress)
        search.seconds["judging"] += time.perf_counter() - judging
        for line in SEARCH:
            search.run_line(line)
        search.break_ties(ties, before_rates)
        best = search.best
        if best is None:
            raise BadInput(f"no setting of the search selects a weight on this model: "
                           f"{', '.join(map(str, RATIOS))} of a row picks none of its rows (scope '{cal.scope}'); "
                           "give --scope matrix, or --method cad with --count")
        confirming = time.perf_counter()
        with _bar(request.progress, sum(2 * len(look) for look in looks), "confirmation") as bar:
            confirmation = confirm(pipe, best.mask, request.judges, goal, targets, keep, looks,
                                   alpha=1 - cal.confidence, sampling=sampling, progress=bar.update)
        seconds = {**{k: round(v, 2) for k, v in search.seconds.items()},
                   "confirmation": round(time.perf_counter() - confirming, 2)}
        seconds["total"] = round(time.perf_counter() - started, 2)
        certificate = Certificate(goal, targets, keep, [j.info() for j in request.judges], search.points,
                                  best.point.order - 1, search.found, confirmation,
                                  {"screen": screen.describe(), "ties": ties.describe(),
                                   "confirm": {"images": confirmation.images,
                                               "looks": [look.describe() for look in looks]},
                                   "screen_repeats": cal.screen_repeats, "confirm_repeats": cal.confirm_repeats,
                                   "confirm_max_repeats": cal.confirm_max_repeats}, seconds, search.ties)
        s = best.point.setting
        amount = ({"round_ratios": tuple(s["round_ratios"])} if s.get("round_ratios")
                  else {"ratio": s["ratio"], "rounds": s["rounds"]})
        cfg = cal.cad(at_steps=s["at_steps"], preserve_rule=s["preserve_rule"] or "mean", **amount)
        info = {"prompts": list(concepts.prompts),
                "calibration": {**cal.part(CalibrationConfig).to_dict(),
                                "outcome": certificate.outcome, "screened": len(search.points), "seconds": seconds}}
        return CalibratedEdit(edited_copy(pipe, best.mask, check=False), "cad", "erase", targets,
                              keep if s["preserve_rule"] else [], cfg, mask=best.mask, attributions=best.attributions,
                              rounds=best.rounds, info=info, seconds=seconds["total"], certificate=certificate,
                              base=pipe)


def calibrated_erase(pipe, concepts: str | Sequence[str], config: CalibratedConfig | None = None, *,
                     preserve: Sequence[str] | None = None, judge: Judge | str | Callable | None = None,
                     second_judge: Judge | str | Callable | None = None,
                     on_point: Callable[[Point], None] | None = None, progress: bool = True,
                     **options: Any) -> CalibratedEdit:
    """Erase `concepts` with the setting the search finds (see the module) and confirm it on new seeds: `edit`
    with a CalibratedConfig (default CalibratedConfig(); `options` set its fields).

    `preserve`: the concepts to keep (default on a model of a world: all its other concepts); `judge`: a Judge,
    its registered name, or a function (images, concept) -> bools (default: the world's judge)."""
    return edit(pipe, concepts, config or CalibratedConfig(), objective="erase", preserve=preserve, judge=judge,
                second_judge=second_judge, progress=progress, on_step=on_point, **options)


def second_judges(pipe, world, spec) -> list[Judge]:
    """The independent judge that confirms beside the search's: `spec` as `as_judge` reads it, else the world's
    pixel reader on a model of a world that has one, else none."""
    if spec is not None:
        return [as_judge(spec, pipe=pipe)]
    if world is not None and world.reader() is not None:
        return [as_judge("pixels", pipe=pipe)]
    return []


def _bar(progress: bool, total: int, desc: str):
    """A progress bar with a total (and so an estimate) while a long step runs; gone when it ends."""
    return tqdm(total=total, desc=desc, unit="img", leave=False, disable=not progress)


def _check_seeds(screen: list[int], confirm: list[int], attribution: list[int]) -> None:
    """The confirmation must use seeds no step of the search used: not the screening (and tie-break) images', not
    the scores'."""
    shared = set(confirm) & (set(screen) | set(attribution))
    if shared:
        raise BadInput(f"the confirmation seeds {min(confirm)}-{max(confirm)} overlap the search's (screening "
                       f"{min(screen)}-{max(screen)}, scores {min(attribution)}-{max(attribution)}); choose "
                       "--confirm-seed past them")
