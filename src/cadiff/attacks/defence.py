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
from typing import Any, Sequence

from cadiff.attacks import Target
from cadiff.attacks.token import TOKEN, TokenAttack, TokenConfig, learn_token, with_token
from cadiff.attribution import check_known_words, concept_prompt, concept_prompts
from cadiff.attribution.result import EmptySelectionError
from cadiff.calibration.probes import make_probe, measure
from cadiff.editing.ablate import ablated
from cadiff.editing.copies import edited_copy
from cadiff.editing.measure import GOAL_TARGET, KEEP_GOAL, kept_shares
from cadiff.editing.methods.cad import CADConfig, add_selection, ratios_type, score_round
from cadiff.editing.result import EditResult
from cadiff.errors import BadInput
from cadiff.evaluation.judges import Judge, as_judge
from cadiff.files.config import Config, make_config, option, positive_int
from cadiff.files.mask import Mask
from cadiff.models.loading import model_fingerprint
from cadiff.worlds import world_of

FIXED = {"components": "linear", "seeds": 16, "at_steps": "early", "preserve_rule": "guard"}  # the search's lines
KEEP_SEED = 400_000  # the keep check's images: apart from the calibrated erase's and the attacks' seeds
KEEP_REPEATS = 2  # the world's design twice: 12 images per shape and colour
TARGETS = ("token", "token+concept")  # what a round scores: the token's prompt, or it and the concept's own


@dataclass(frozen=True)
class HardenConfig(Config):
    harden_rounds: int = option(3, "hardening: adversarial rounds at most (default 3)", type=positive_int)
    harden_ratios: tuple[float, ...] = option(
        (0.02, 0.01, 0.005), "hardening: the share per row zeroed for the token each round, and the smaller ones "
                             "tried when it costs a kept concept (default 0.02,0.01,0.005)", type=ratios_type)
    harden_target: float = option(GOAL_TARGET, "hardening: stop once the learned token brings the concept back in at "
                                        "most this share of images (default 0.05)", type=float)
    harden_keep: float = option(KEEP_GOAL, "hardening: a round may not take a kept concept below this share of its "
                                      "accuracy (default 0.95)", type=float)
    harden_seed: int = option(1000, "hardening: the learned token's seed in round 1, +1 each round (default 1000; "
                                    "the attack's is 0)", type=int)
    harden_with: str = option("token", "hardening: the targets each round scores: the learned token's prompt "
                                       "(token, default), or it and the concept's own prompt (token+concept)",
                              choices=TARGETS)

    def __post_init__(self):
        ratios = tuple(float(r) for r in self.harden_ratios)
        if not ratios or not all(0.0 < r <= 1.0 for r in ratios):
            raise BadInput(f"harden_ratios must be fractions in (0, 1], got {self.harden_ratios}")
        object.__setattr__(self, "harden_ratios", ratios)
        if self.harden_with not in TARGETS:
            raise BadInput(f"harden_with must be one of {', '.join(TARGETS)}, got '{self.harden_with}'")
        for name in ("harden_target", "harden_keep"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise BadInput(f"{name} must be in [0, 1], got {getattr(self, name)}")


def token_prompt(pipe, concept: str) -> str:
    """The concept's prompt with its word replaced by the learned token ('a red shape' -> 'a <concept> shape')."""
    prompt = with_token(concept_prompt(pipe, concept), concept)
    return prompt if TOKEN in prompt.split() else f"a {TOKEN}"


def harden(original, mask: Mask, concept: str, *, keep: Sequence[str] | None = None,
           judge: Judge | str | Any = None, config: HardenConfig | None = None, token: TokenConfig | None = None,
           seeds: int = 1, **cad: Any) -> EditResult:
    """`mask` (an erase of `concept` on `original`) grown by adversarial rounds (see the module); `cad`: CAD's
    fixed settings of the rounds (default linear weights, 16 trajectories, early steps, guard rule); `seeds`:
    per prompt, for the token's success. Returns the hardened edit with its rounds in info['hardening']."""
    started = time.perf_counter()
    config = config or HardenConfig()
    token = token or TokenConfig()
    unknown = [k for k in ("ratio", "count", "rounds", "round_ratios") if k in cad]
    if unknown:
        raise BadInput(f"{', '.join(unknown)}: the hardening zeroes --harden-ratios per round")
    cfg = make_config(CADConfig, {**FIXED, **cad}, "the hardening")
    mask.check_fingerprint(model_fingerprint(original))
    world = world_of(original)
    if keep is None:
        if world is None:
            raise BadInput("the hardening needs the concepts to keep on this model (keep=[...], --keep C ...)")
        keep = world.others([concept])
    keep = list(keep)
    check_known_words(original, [p for group in concept_prompts(original, [concept], keep) for p in group])
    judge = as_judge(judge, pipe=original)
    judge.check([concept, *keep])
    attack = TokenAttack(token)
    target = Target(original, None, concept, keep, judge, world, seeds)
    attack.check(target)
    prompts = attack.prompts(target)
    probe = make_probe(original, world, [concept], keep, repeats=KEEP_REPEATS, extra=0, seed=KEEP_SEED)
    before = {c: r.value for c, r in measure(original, probe, judge, keep).items()}
    plain = [concept_prompt(original, concept)] if world is None else world.phrasings(concept)[:32]
    with ablated(original, mask, check=False):
        left = target.success(original, plain, seed=KEEP_SEED)[0].value
    limit = max(left, config.harden_target)  # a round may not bring the concept back by its own prompts
    prompt = token_prompt(original, concept)
    targets = [prompt] + ([concept_prompt(original, concept)] if config.harden_with == "token+concept" else [])

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
        attrs = score_round(learned, targets, cfg, objective="erase", preserve=keep, mask=mask, progress=False)
        tries, passed = [], False
        for ratio in config.harden_ratios:
            try:
                grown = add_selection(mask, attrs, replace(cfg, ratio=ratio), "erase", k + 1)
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
            log.append({**step, "outcome": "undone: no ratio selects a weight (each is below 1 / a row's inputs)"})
            break
        if not passed:
            log.append({**step, "outcome": f"undone: at every ratio a kept concept fell below "
                                           f"{config.harden_keep:.0%} or '{concept}' came back above {limit:.0%}"})
            break
        mask, attributions = grown, attrs
        rounds[k + 1] = mask
        log.append({**step, "ratio": ratio, "added": tries[-1]["added"], "outcome": "zeroed"})
    info = {"hardening": log, "concept_before": round(left, 4), "config": config.to_dict(), "token": token.to_dict(),
            "prompt": prompt, "targets": targets, "zeroed_before": len(rounds[1]), "zeroed_after": len(mask)}
    cfg = replace(cfg, ratio=config.harden_ratios[0])
    return EditResult(edited_copy(original, mask, check=False), "cad", "erase", [concept], keep, cfg, mask=mask,
                      attributions=attributions, rounds=rounds, info=info, seconds=time.perf_counter() - started)
