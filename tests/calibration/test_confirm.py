"""The certificate's proof: exact one-sided bounds, a sequential confirmation whose looks do not inflate the error,
two judges that must agree, and the three outcomes with their exit codes."""

import json
import math

import numpy as np
import pytest

from cadiff.attribution import attribute
from cadiff.calibration import calibrated_erase
from cadiff.editing.goal import Goal
from cadiff.calibration.confirm import Claim, confirm, look_probes
from cadiff.evaluation.accuracy import Rate, make_probe
from cadiff.cli import main
from cadiff.evaluation.stats import lower_bound, upper_bound
from tiny_pipelines import tiny_sd

KEEP = ["a star", "a square"]
SAMPLING = {"steps": 2, "guidance": 4.0}


@pytest.fixture(scope="module")
def sd2():
    return tiny_sd("sd2")


@pytest.fixture(scope="module")
def mask(sd2):
    return attribute(sd2, "a circle", seeds=1, components="attn", progress=False, **SAMPLING).select(count=8,
                                                                                                   scope="matrix")


def test_the_bounds_are_exact_clopper_pearson():
    for n in (1, 24, 59, 500):  # no hit: the closed form 1 - alpha^(1/n); all hits: alpha^(1/n)
        assert upper_bound(0, n, 0.05) == pytest.approx(1 - 0.05 ** (1 / n), rel=1e-9)
        assert lower_bound(n, n, 0.05) == pytest.approx(0.05 ** (1 / n), rel=1e-9)
    assert (round(lower_bound(5, 10, 0.025), 4), round(upper_bound(5, 10, 0.025), 4)) == (0.1871, 0.8129)  # tables
    assert upper_bound(0, 59, 0.05) < 0.05 < upper_bound(0, 58, 0.05)  # the smallest n that proves 0 of n <= 5 %
    assert upper_bound(3, 40, 0.05) == pytest.approx(1 - lower_bound(37, 40, 0.05), rel=1e-12)
    assert upper_bound(7, 7, 0.05) == 1.0 and lower_bound(0, 7, 0.05) == 0.0


def _false_proofs(kind: str, goal: float, rate_before: float, rate_after: float, sizes: list[int], alpha: float,
                  trials: int = 200_000) -> float:
    """How often a claim that is false by exactly the goal's margin is proven at some look (simulated)."""
    rng = np.random.default_rng(0)
    steps = np.diff([0, *sizes])
    hits_a = np.cumsum(rng.binomial(steps, rate_after, (trials, len(sizes))), 1)
    hits_b = np.cumsum(rng.binomial(steps, rate_before, (trials, len(sizes))), 1)
    proven = np.zeros(trials, bool)
    for j, n in enumerate(sizes):  # the claim's decision depends on (hits_b, hits_a): tabulate it on what occurs
        pairs = set(zip(hits_b[:, j].tolist(), hits_a[:, j].tolist()))
        decided = {}
        for b, a in pairs:
            claim = Claim("j", "c", kind, goal, Rate(b, n), Rate(a, n))
            claim.decide(alpha / len(sizes), j + 1)
            decided[(b, a)] = claim.status == "proven"
        proven |= np.array([decided[(b, a)] for b, a in zip(hits_b[:, j].tolist(), hits_a[:, j].tolist())])
    return float(proven.mean())


def test_looking_again_does_not_inflate_the_error():
    """A target exactly at the goal, and a kept share exactly at the goal, looked at 4 times (24 to 192 images):
    proven wrongly in at most alpha of the trials; a fresh 95 % bound at every look would exceed it."""
    sizes, alpha = [24, 48, 96, 192], 0.05
    target = _false_proofs("target", 0.05, 1.0, 0.05, sizes, alpha)
    kept = _false_proofs("keep", 0.95, 0.9, 0.9 * 0.95, sizes, alpha)
    assert target <= alpha and kept <= alpha
    naive = _false_proofs("target", 0.05, 1.0, 0.05, sizes, alpha * len(sizes))  # alpha at every look
    assert naive > target


def test_images_to_prove_is_what_the_bound_needs():
    claim = Claim("j", "circle", "target", 0.05, Rate(24, 24), Rate(0, 24))
    claim.decide(0.05, 1)
    assert claim.status == "open" and claim.images_to_prove(0.05) == 96  # 24, 48, 96: the first n with 0 hits <= 5 %
    assert upper_bound(0, 96, 0.05) <= 0.05 < upper_bound(0, 48, 0.05)
    missed = Claim("j", "circle", "target", 0.05, Rate(24, 24), Rate(3, 24))
    assert not missed.meets and missed.images_to_prove(0.05) is None


def test_the_looks_double_the_design_on_fresh_seeds():
    probes = look_probes(lambda repeats, seed: make_probe(None, None, ["a"], ["b"], repeats=repeats, extra=0,
                                                          seed=seed), 2, 16, 1000)
    assert [len(p) // 24 for p in probes] == [2, 2, 4, 8]  # totals 2, 4, 8, 16 repeats of 12 images per concept
    seeds = [s for p in probes for s in p.seeds]
    assert seeds == list(range(1000, 1000 + len(seeds)))


def agree(images, concept):
    return np.full(len(images), concept != "a circle")


def test_two_agreeing_judges_prove_a_clear_case_at_the_first_look(sd2, mask):
    probes = look_probes(lambda r, s: make_probe(sd2, None, ["a circle"], KEEP, repeats=r, extra=0, seed=s),
                         2, 8, 200_000)
    conf = confirm(sd2, mask, [_judge(agree, "first"), _judge(agree, "second")], Goal(0.2, 0.8), ["a circle"],
                   KEEP, probes, alpha=0.05, sampling=SAMPLING)
    assert conf.outcome == "proven" and conf.looks == 1 and conf.images == len(probes[0]) == 72
    assert all(c.status == "proven" and c.after.n == 24 for c in conf.claims) and len(conf.claims) == 6
    assert conf.alpha_per_look == pytest.approx(0.05 / 3)


def test_an_undecided_claim_adds_images_and_a_decided_one_keeps_its_counts(sd2, mask):
    probes = look_probes(lambda r, s: make_probe(sd2, None, ["a circle"], KEEP, repeats=r, extra=0, seed=s),
                         1, 4, 200_000)
    conf = confirm(sd2, mask, [_judge(agree, "first")], Goal(0.2, 0.8), ["a circle"], KEEP, probes, alpha=0.05,
                   sampling=SAMPLING)
    target, star, _ = conf.claims
    # 0 of 12 proves <= 20 % at alpha/3 (bound 0.30 > 0.2 at 12, 0.16 at 24); 12 of 12 kept proves >= 80 % at 24
    assert [c.after.n for c in conf.claims] == [24, 24, 24] and conf.looks == 2 and conf.outcome == "proven"
    assert target.look == 2 and target.bound == pytest.approx(upper_bound(0, 24, 0.05 / 3))


def test_a_second_judge_that_still_sees_the_target_makes_it_a_miss(sd2, mask):
    probes = look_probes(lambda r, s: make_probe(sd2, None, ["a circle"], KEEP, repeats=r, extra=0, seed=s),
                         2, 2, 200_000)
    sees = _judge(lambda images, concept: np.ones(len(images), bool), "second")
    conf = confirm(sd2, mask, [_judge(agree, "first"), sees], Goal(0.2, 0.8), ["a circle"], KEEP, probes,
                   alpha=0.05, sampling=SAMPLING)
    assert conf.outcome == "missed"
    assert [c.status for c in conf.claims if c.concept == "a circle"] == ["proven", "refuted"]


def _judge(fn, label):
    from cadiff.evaluation.judges import CallableJudge

    return CallableJudge(fn, label=label)


JUDGES = '''
import numpy as np

def judge(images, concept):
    return np.full(len(images), concept != "a circle")

def sees(images, concept):
    return np.ones(len(images), bool)

def second(images, concept):
    return judge(images, concept)
'''


@pytest.mark.parametrize("second, code, verdict", [("second", 0, "PROVEN"), (None, 4, "MET, NOT PROVEN"),
                                                    ("sees", 3, "MISSED")])
def test_the_three_outcomes_and_their_exit_codes(tmp_path, capsys, second, code, verdict):
    """Proven by two judges (exit 0); one judge only: met on point estimates, not proven (exit 4); the second judge
    still sees the target (exit 3). certificate.json carries the level, the bounds and the outcome."""
    tiny_sd("sd2").save_pretrained(tmp_path / "model")
    (tmp_path / "judges.py").write_text(JUDGES)
    argv = ["erase", "a circle", "--preserve", *KEEP, "--judge", f"{tmp_path / 'judges.py'}:judge",
            "--model", str(tmp_path / "model"), "--steps", "2", "--seeds", "1", "--guidance", "4",
            "--components", "attn", "--scope", "matrix", "--budget", "1", "--screen-extra", "0",
            "--goal-target", "0.2", "--goal-keep", "0.8", "--confirm-repeats", "2", "--confirm-max-repeats", "2",
            "--confidence", "0.9", "--no-export", "--out", str(tmp_path / "run")]
    if second:
        argv += ["--second-judge", f"{tmp_path / 'judges.py'}:{second}"]
    assert main(argv) == code
    out = capsys.readouterr().out
    assert f": {verdict} (goal" in out and "proven at 90% confidence" in out
    cert = json.loads((tmp_path / "run" / "certificate.json").read_text())
    assert cert["outcome"] == {0: "proven", 4: "met", 3: "missed"}[code] and cert["confidence"] == 0.9
    claims = cert["confirmation"]["claims"]
    assert len(claims) == 3 * (2 if second else 1) and all(c["bound"] is not None for c in claims)
    target = claims[0]
    assert target["bound"] == pytest.approx(upper_bound(0, 24, 0.1), abs=1e-4) and not math.isnan(target["bound"])


def test_a_bad_confidence_or_look_budget_or_the_same_judge_twice_is_refused_before_work(sd2):
    with pytest.raises(ValueError, match="confidence must be in"):
        calibrated_erase(sd2, "a circle", preserve=KEEP, judge=agree, confidence=1.0)
    with pytest.raises(ValueError, match="below confirm_repeats"):
        calibrated_erase(sd2, "a circle", preserve=KEEP, judge=agree, confirm_repeats=4, confirm_max_repeats=2)
    with pytest.raises(ValueError, match="the second judge is the first one again"):
        calibrated_erase(sd2, "a circle", preserve=KEEP, judge=agree, second_judge=agree)


def test_the_search_and_the_confirmation_show_bars_with_totals(sd2, capsys):
    """While a setting is screened and while the confirmation runs, a bar says which step it is on and how many
    images it has left (a total, hence an estimate)."""
    calibrated_erase(sd2, "a circle", preserve=KEEP, judge=agree, steps=2, seeds=1, guidance=4.0, components="attn",
                     scope="matrix", screen_repeats=1, screen_extra=2, confirm_repeats=1, confirm_max_repeats=1,
                     budget=1)
    err = capsys.readouterr().err
    assert "setting 1/1: screening" in err and "/38" in err  # 12 images a concept and 2 naming the target
    assert "confirmation" in err and "/72" in err  # 36 images, before and after
    quiet = calibrated_erase(sd2, "a circle", preserve=KEEP, judge=agree, steps=2, seeds=1, guidance=4.0,
                             components="attn", scope="matrix", screen_repeats=1, screen_extra=2, confirm_repeats=1,
                             confirm_max_repeats=1, budget=1, progress=False)
    assert quiet.certificate.outcome == "met" and "screening" not in capsys.readouterr().err
