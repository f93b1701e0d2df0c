"""Hardening a zeroing erase against the learned-token attack, training-free: adversarial rounds. Each round learns
a token on the model edited so far (textual inversion, the attack's own budget, a seed of its own), measures the
token's success, and when the concept comes back, scores the token's prompt (with `harden_with="token+concept"`
also the concept's own prompt) as a further target of the erase objective with the guard rule against the
concepts to keep, and zeroes the top `harden_ratios[0]` per row of what is left (of the weights `components`
names: `components="text"` cuts only where the text is read). A round that takes a kept concept below
`harden_keep` of its accuracy, or brings the concept back by its own prompts (more often than the erase left it,
or than `harden_target`), is tried again at the next ratio (the same scores; a ratio that selects no weight is
skipped), and undone when no ratio passes both checks, which ends the hardening; so does a round whose token no
longer brings the concept back (success at most `harden_target`).

The counterpart, without training, of adversarial unlearning (AdvUnlearn, 2024): the attack's token is a concept
like any other, and CAD can locate it.

Example:
    >>> edit = cadiff.erase(pipe, "circle")                                    # doctest: +SKIP
    >>> hardened = harden(pipe, edit.mask, "circle")                           # doctest: +SKIP
    >>> hardened.info["hardening"]                                             # doctest: +SKIP
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Sequence

from cadiff.attacks import Target
from cadiff.attacks.token import TOKEN, TokenAttack, TokenConfig, learn_token, with_token
from cadiff.attribution import Concepts, concept_prompt
from cadiff.attribution.config import AttributionConfig, GuardedAttributionConfig
from cadiff.attribution.result import EmptySelectionError
from cadiff.evaluation.accuracy import make_probe, measure
from cadiff.editing.ablate import ablated
from cadiff.editing.copies import edited_copy
from cadiff.editing.edit import edit
from cadiff.editing.goal import GOAL_TARGET, KEEP_GOAL
from cadiff.evaluation.accuracy import kept_shares
from cadiff.editing.methods import EditMethod, EditRequest, register_method
from cadiff.editing.methods.cad import CADConfig, add_selection, score_round
from cadiff.editing.result import EditResult
from cadiff.editing.selection import ScopeConfig
from cadiff.errors import BadInput
from cadiff.evaluation.judges import Judge, as_judge
from cadiff.config import option
from cadiff.attribution.mask import Mask
from cadiff.models.loading import model_fingerprint
from cadiff.worlds import world_of

KEEP_SEED = 400_000  # the keep check's images: apart from the calibrated erase's and the attacks' seeds
KEEP_REPEATS = 2  # the world's design twice: 12 images per shape and colour
TARGETS = ("token", "token+concept")  # what a round scores: the token's prompt, or it and the concept's own


@dataclass(frozen=True)
class HardenConfig(GuardedAttributionConfig, ScopeConfig, TokenConfig):
    """The hardening: its rounds, the learned token each round trains (TokenConfig's settings) and CAD's scoring
    of the token's prompt (the defaults are the calibrated search's guarded line: linear weights, 16 trajectories,
    early steps, the guard rule)."""

    not_options: ClassVar[dict[str, str]] = dict.fromkeys(
        ("ratio", "count", "rounds", "round_ratios"), "the hardening zeroes --harden-ratios per round")
    shards: ClassVar[bool] = False  # the scored model is edited

    seeds: int | Sequence[int] = option(16, "trajectories per prompt a round scores (default 16)", low=1)
    harden_rounds: int = option(3, "hardening: adversarial rounds at most (default 3)", low=1)
    harden_ratios: tuple[float, ...] = option(
        (0.02, 0.01, 0.005), "hardening: the share per row zeroed for the token each round, and the smaller ones "
                             "tried when it costs a kept concept (default 0.02,0.01,0.005)", low=0, high=1, low_open=True)
    harden_target: float = option(GOAL_TARGET, "hardening: stop once the learned token brings the concept back in at "
                                        "most this share of images (default 0.05)")
    harden_keep: float = option(KEEP_GOAL, "hardening: a round may not take a kept concept below this share of its "
                                      "accuracy (default 0.95)")
    harden_seed: int = option(1000, "hardening: the learned token's seed in round 1, +1 each round (default 1000; "
                                    "the attack's is 0)")
    harden_with: str = option("token", "hardening: the targets each round scores: the learned token's prompt "
                                       "(token, default), or it and the concept's own prompt (token+concept)",
                              choices=TARGETS)
    success_per_prompt: int = option(1, "hardening: images per prompt when measuring the token's success (default 1)",
                                low=1)

    def __post_init__(self):
        AttributionConfig.__post_init__(self)
        ScopeConfig.__post_init__(self)
        ratios = tuple(float(r) for r in self.harden_ratios)
        if not ratios or not all(0.0 < r <= 1.0 for r in ratios):
            raise BadInput(f"harden_ratios must be fractions in (0, 1], got {self.harden_ratios}")
        object.__setattr__(self, "harden_ratios", ratios)
        if self.harden_with not in TARGETS:
            raise BadInput(f"harden_with must be one of {', '.join(TARGETS)}, got '{self.harden_with}'")
        for name in ("harden_target", "harden_keep"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise BadInput(f"{name} must be in [0, 1], got {getattr(self, name)}")

    def cad(self, ratio: float) -> CADConfig:
        """CAD's config of a round at `ratio`."""
        return self.part(CADConfig, ratio=ratio)

    def token(self) -> TokenConfig:
        return self.part(TokenConfig)


def token_prompt(pipe, concept: str) -> str:
    """The concept's prompt with its word replaced by the learned token ('a red shape' -> 'a <concept> shape')."""
    prompt = with_token(concept_prompt(pipe, concept), concept)
    return prompt if TOKEN in prompt.split() else f"a {TOKEN}"


@register_method
class Harden(EditMethod):
    """`start` (an erase of the one concept) grown by adversarial rounds (see the module); its judge says whether
    the token brings the concept back; concepts to keep default to a world's other concepts."""

    name = "harden"
    summary = "harden a zeroing erase (start=, --start) against the learned-token attack by adversarial rounds"
    config_class = HardenConfig
    keeps_world = True
    judged = True
    starts_from = True
    concepts_at_once = 1

    def judges(self, pipe, concepts, judge, second_judge) -> tuple[Judge, ...]:
        if second_judge is not None:
            raise BadInput("the hardening has one judge; drop second_judge= (--second-judge)")
        judge = as_judge(judge, pipe=pipe)
        judge.check(concepts.all)
        return (judge,)

    def request(self, pipe, inputs, **options) -> EditRequest:
        request = super().request(pipe, inputs, **options)
        request.start.check_fingerprint(model_fingerprint(pipe))
        TokenAttack(self.config.token()).check(self.target(pipe, request))
        return request

    def target(self, pipe, request: EditRequest) -> Target:
        concepts = request.concepts
        return Target(pipe, None, concepts.targets[0], list(concepts.keep), request.judges[0], world_of(pipe),
                      self.config.success_per_prompt)

    def run(self, original, request: EditRequest) -> EditResult:
        started = time.perf_counter()
        config, mask = self.config, request.start
        concepts, world, judge = request.concepts, world_of(original), request.judges[0]
        concept, keep = concepts.targets[0], list(concepts.keep)
        token, target = config.token(), self.target(original, request)
        prompts = TokenAttack(token).prompts(target)
        probe = make_probe(original, world, [concept], keep, repeats=KEEP_REPEATS, extra=0, seed=KEEP_SEED)
        before = {c: r.value for c, r in measure(original, probe, judge, keep).items()}
        plain = [concepts.prompts[0]] if world is None else world.phrasings(concept)[:32]
        with ablated(original, mask, check=False):
            left = target.success(original, plain, seed=KEEP_SEED)[0].value
        limit = max(left, config.harden_target)  # a round may not bring the concept back by its own prompts
        prompt = token_prompt(original, concept)
        targets = [prompt] + ([concepts.prompts[0]] if config.harden_with == "token+concept" else [])

        rounds, log, attributions = {1: mask}, [], []
        for k in range(1, config.harden_rounds + 1):
            step = {"round": k, "token_seed": config.harden_seed + k - 1}
            round_token = replace(token, token_seed=step["token_seed"])
            pixels, captions = TokenAttack(round_token).data(target)
            with ablated(original, mask, check=False):  # the model edited so far, in place: no copy of the denoiser
                learned, losses = learn_token(original, pixels, captions, round_token)
                success, _ = target.success(learned, prompts, seed=step["token_seed"])
            step.update(token_success=round(success.value, 4), token_loss=losses[-1])
            if success.value <= config.harden_target:
                log.append({**step, "outcome": "held: the token no longer brings the concept back"})
                break
            scored = Concepts(tuple(targets), concepts.keep, tuple(targets), concepts.keep_prompts)  # ours: trusted
            attrs = score_round(learned, scored, config.cad(config.harden_ratios[0]), objective="erase", mask=mask,
                                progress=False)
            tries, passed = [], False
            for ratio in config.harden_ratios:
                try:
                    grown = add_selection(mask, attrs, config.cad(ratio), "erase", k + 1)
                except EmptySelectionError:  # a ratio below 1 / the rows' inputs selects nothing: no try at it
                    tries.append({"ratio": ratio, "added": 0, "outcome": "selects nothing"})
                    continue
                after = {c: r.value for c, r in measure(original, probe, judge, keep, mask=grown).items()}
                kept = kept_shares(before, after, keep)
                worst = min(kept, key=kept.get)
                with ablated(original, grown, check=False):
                    back = target.success(original, plain, seed=KEEP_SEED)[0].value
                tries.append({"ratio": ratio, "added": len(grown) - len(mask), "kept_min": round(kept[worst], 4),
                              "kept_min_concept": worst, "concept": round(back, 4)})
                passed = kept[worst] >= config.harden_keep and back <= limit
                if passed:
                    break
            step["tries"] = tries
            if all(t.get("outcome") == "selects nothing" for t in tries):
                log.append({**step,
                            "outcome": "undone: no ratio selects a weight (each is below 1 / a row's inputs)"})
                break
            if not passed:
                log.append({**step, "outcome": f"undone: at every ratio a kept concept fell below "
                                               f"{config.harden_keep:.0%} or '{concept}' came back above {limit:.0%}"})
                break
            mask, attributions = grown, attrs
            rounds[k + 1] = mask
            log.append({**step, "ratio": ratio, "added": tries[-1]["added"], "outcome": "zeroed"})
        info = {"hardening": log, "concept_before": round(left, 4), "config": config.to_dict(),
                "token": token.to_dict(), "prompt": prompt, "targets": targets, "zeroed_before": len(rounds[1]),
                "zeroed_after": len(mask)}
        return EditResult(edited_copy(original, mask, check=False), "cad", "erase", [concept], keep,
                          config.cad(config.harden_ratios[0]), mask=mask, attributions=attributions, rounds=rounds,
                          info=info, seconds=time.perf_counter() - started, base=original)


def harden(original, mask: Mask, concept: str, config: HardenConfig | None = None, *,
           preserve: Sequence[str] | None = None, judge: Judge | str | Any = None, progress: bool = True,
           **options: Any) -> EditResult:
    """`mask` (an erase of `concept` on `original`) grown by adversarial rounds (see the module): `edit` with a
    HardenConfig (default HardenConfig(); `options` set its fields) starting from `mask`. Returns the hardened
    edit with its rounds in info['hardening']."""
    return edit(original, concept, config or HardenConfig(), objective="erase", preserve=preserve, judge=judge,
                start=mask, progress=progress, **options)
