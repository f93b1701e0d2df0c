"""The calibrated erase: its search stops at the first setting that meets the goal, tries every setting in order
when none does, confirms on seeds the search never used, writes its certificate; bad input fails before work."""

import json

import numpy as np
import pytest
import torch

import cadiff
from cadiff.attribution import AttributionConfig, Concepts, attribute
from cadiff.calibration import RATIOS, SEARCH, CalibratedEdit, calibrated_erase
from cadiff.evaluation.accuracy import Rate
from cadiff.calibration.search import keep_maxima, with_keep_rule
from cadiff.cli import main
from cadiff.evaluation.judges import Judge
from tiny_pipelines import tiny_sd

FAST = {"steps": 2, "seeds": 1, "guidance": 4.0, "components": "attn", "scope": "matrix", "screen_repeats": 1,
        "screen_extra": 2, "confirm_repeats": 1, "confirm_max_repeats": 1}  # rows too narrow for 2 % per row
KEEP = ["a star", "a square"]


@pytest.fixture(scope="module")
def sd2():
    return tiny_sd("sd2")


def bright(images, concept):
    """A tiny judge: an image 'shows' a concept when its mean brightness is above the middle."""
    return images.reshape(len(images), -1).mean(1) > 127


def test_the_wilson_interval():
    assert Rate(0, 24).interval() == (0.0, 0.138)
    assert Rate(24, 24).interval() == (0.862, 1.0)
    lo, hi = Rate(6, 12).interval()
    assert lo < 0.5 < hi and abs((0.5 - lo) - (hi - 0.5)) < 1e-3


@pytest.mark.parametrize("rule", ["guard", "relative"])
def test_the_folded_keep_rules_equal_attribute(sd2, rule):
    """The search folds the guard and relative rules from per-concept scores; attribute() folds the same scores
    the same way (keep_rules), so the two are equal bit for bit on any CPU."""
    settings = {"seeds": 1, "steps": 2, "guidance": 4.0, "components": "attn"}
    own = attribute(sd2, "a circle", progress=False, **settings)
    folded = with_keep_rule(own, keep_maxima(sd2, Concepts.on(sd2, "a circle", KEEP), AttributionConfig(**settings)),
                            rule)
    direct = attribute(sd2, "a circle", preserve=KEEP, preserve_rule=rule, progress=False, **settings)
    assert folded.scores.keys() == direct.scores.keys()
    for name, s in direct.scores.items():
        assert torch.equal(folded.scores[name], s), name
    assert folded.metadata["J_preserve"] == direct.metadata["J_preserve"]


def test_a_judge_that_never_sees_the_target_stops_the_search_at_the_first_setting(sd2, tmp_path):
    result = calibrated_erase(sd2, "a circle", preserve=KEEP, judge=lambda images, c: np.zeros(len(images), bool)
                              if c == "a circle" else np.ones(len(images), bool), **FAST)
    cert = result.certificate
    # one judge and 12 images a concept: the point estimates meet the goal, nothing more is proven
    assert isinstance(result, CalibratedEdit) and cert.outcome == "met" and not cert.passed and cert.met_in_screening
    assert any("one judge only" in why for why in cert.unproven())
    assert len(cert.tried) == 1 and cert.point.setting == {"at_steps": SEARCH[0].at_steps, "preserve_rule": None,
                                                           "ratio": RATIOS[0], "rounds": 1}
    assert result.config.ratio == RATIOS[0] and result.config.components == "attn" and len(result.mask) > 0
    assert cert.after["a circle"].n == 12 + 0 and cert.before["a star"].n == 12  # 12 a repeat, no extra: confirm
    result.save(tmp_path / "run")
    data = json.loads((tmp_path / "run" / "certificate.json").read_text())
    assert data["outcome"] == "met" and not data["passed"] and data["setting"]["ratio"] == RATIOS[0]
    assert len(data["tried"]) == 1 and data["confidence"] == 0.95 and data["unproven"]
    assert (tmp_path / "run" / "frontier.png").stat().st_size > 0 and (tmp_path / "run" / "mask.safetensors").exists()


def test_a_target_that_never_goes_tries_every_setting_in_order_and_says_so(sd2):
    seen = []
    result = calibrated_erase(sd2, "a circle", preserve=KEEP, judge=lambda images, c: np.ones(len(images), bool), on_point=seen.append, **FAST)
    cert = result.certificate
    assert cert.outcome == "missed" and not cert.met_in_screening
    assert [p.order for p in seen] == list(range(1, len(seen) + 1)) and len(cert.tried) == len(seen)
    lines = [(p.setting["at_steps"], p.setting["preserve_rule"]) for p in seen]
    expected = [(line.at_steps, line.rule) for line in SEARCH]
    assert list(dict.fromkeys(lines)) == expected  # every line, in the documented order
    assert max(p.setting["rounds"] for p in seen) == max(line.rounds for line in SEARCH)  # rounds went on: kept
    assert all(p.kept_min == 1.0 and p.target_max == 1.0 for p in seen)
    assert cert.point.zeroed == min(p.zeroed for p in seen)  # all as far from the goal: the fewest weights zeroed
    assert any("a circle still judged present in 100%" in m for m in cert.misses())
    assert "MISSED" in cert.text()


def test_the_budget_caps_the_screened_settings(sd2):
    result = calibrated_erase(sd2, "a circle", preserve=KEEP, judge=lambda images, c: np.ones(len(images), bool),
                              budget=3, **FAST)
    assert len(result.certificate.tried) == 3


def test_a_line_ends_when_a_kept_concept_falls(sd2, monkeypatch):
    """The target never goes and 'a star' is lost as soon as anything is zeroed: each line screens one setting."""
    import cadiff.calibration.search as search

    edited = {"now": False}

    def measure(pipe, probe, judge, concepts, mask=None, **sampling):
        edited["now"] = mask is not None
        return original(pipe, probe, judge, concepts, mask=mask, **sampling)

    def judge(images, concept):
        return np.full(len(images), not (concept == "a star" and edited["now"]))

    original = search.measure
    monkeypatch.setattr(search, "measure", measure)
    tried = calibrated_erase(sd2, "a circle", preserve=KEEP, judge=judge, **FAST).certificate.tried
    assert [p.setting["ratio"] for p in tried] == [RATIOS[0]] * len(SEARCH)  # one per line: the keep broke
    assert all(p.kept_min_concept == "a star" and p.kept_min == 0.0 for p in tried)


def _scripted(monkeypatch, present):
    """Judge every screened point by its setting: `present(cfg, concept)`; unedited images show everything."""
    import cadiff.calibration.search as search

    now = {}
    try_point, measure = search._Search.try_point, search.measure

    def staged(self, line, cfg, *args):
        now.update(cfg=cfg)
        return try_point(self, line, cfg, *args)

    def measured(pipe, probe, judge, concepts, mask=None, **sampling):
        now.update(edited=mask is not None)
        return measure(pipe, probe, judge, concepts, mask=mask, **sampling)

    monkeypatch.setattr(search._Search, "try_point", staged)
    monkeypatch.setattr(search, "measure", measured)
    def judge(images, concept):
        shown = True if not now["edited"] else present(now["cfg"], concept)
        return np.resize(np.asarray(shown, bool), len(images))

    return judge


def test_an_edit_too_large_for_the_model_halves_its_ratio_until_the_concepts_hold(sd2, monkeypatch):
    """Scripted: any edit takes the target; 'a star' goes at the search's ratios and stays at a quarter of them.
    The first line halves twice and meets the goal there; the setting, given to the plain edit, is the same mask."""
    judge = _scripted(monkeypatch, lambda cfg, c: c != "a circle" and (c != "a star" or cfg.ratio < RATIOS[0] / 3))
    result = calibrated_erase(sd2, "a circle", preserve=KEEP, judge=judge, **FAST)
    tried = [(p.setting["at_steps"], p.setting["ratio"], p.kept_min) for p in result.certificate.tried]
    first = SEARCH[0].at_steps
    assert tried == [(first, RATIOS[0], 0.0), (first, RATIOS[0] / 2, 0.0), (first, RATIOS[0] / 4, 1.0)]
    assert result.certificate.outcome == "met" and result.config.ratio == RATIOS[0] / 4
    plain = cadiff.erase(sd2, "a circle", cadiff.CADConfig(), ratio=RATIOS[0] / 4, at_steps=first,
                         **{k: v for k, v in FAST.items() if "_" not in k})
    assert {n: i.tolist() for n, i in plain.mask.indices.items()} == \
        {n: i.tolist() for n, i in result.mask.indices.items()}


def test_an_edit_that_halves_the_target_and_breaks_a_kept_concept_halves_its_ratio_too(sd2, monkeypatch):
    """Scripted: every edit leaves the target in a third of its images (not gone, but more than halved); 'a star'
    goes at the search's ratios: the first line halves once, where every concept holds."""
    third = np.arange(3) == 0
    judge = _scripted(monkeypatch, lambda cfg, c: third if c == "a circle"
                      else (c != "a star" or cfg.ratio < RATIOS[0]))
    tried = calibrated_erase(sd2, "a circle", preserve=KEEP, judge=judge, **FAST).certificate.tried
    first = [(p.setting["ratio"], p.kept_min) for p in tried if p.setting["at_steps"] == SEARCH[0].at_steps
             and p.setting["preserve_rule"] is None]
    assert first == [(RATIOS[0], 0.0), (RATIOS[0] / 2, 1.0)]
    assert 0.2 < tried[0].target_max < 0.5


def test_a_line_does_not_halve_when_the_target_stayed(sd2, monkeypatch):
    """Scripted: the target never goes and 'a star' goes with any edit: a smaller edit cannot help, so every line
    screens its first ratio only (no halving)."""
    judge = _scripted(monkeypatch, lambda cfg, c: c != "a star")
    tried = calibrated_erase(sd2, "a circle", preserve=KEEP, judge=judge, **FAST).certificate.tried
    assert [p.setting["ratio"] for p in tried] == [RATIOS[0]] * len(SEARCH)


def test_the_halving_line_stops_when_the_target_comes_back(sd2, monkeypatch):
    """Scripted: the target goes only at the search's ratios, where 'a star' goes too: the first line halves once,
    sees the target back, and the search goes on to the next line; the guard line's rounds go on at the halved
    ratio, where every concept held."""
    judge = _scripted(monkeypatch, lambda cfg, c: (cfg.ratio < RATIOS[0]) if c == "a circle"
                      else (c != "a star" or cfg.ratio < RATIOS[0]))
    result = calibrated_erase(sd2, "a circle", preserve=KEEP, judge=judge, **FAST)
    first = [p.setting["ratio"] for p in result.certificate.tried if p.setting["at_steps"] == SEARCH[0].at_steps
             and p.setting["preserve_rule"] is None]
    assert first == [RATIOS[0], RATIOS[0] / 2] and result.certificate.outcome == "missed"
    guard = [(p.setting["ratio"], p.setting["rounds"]) for p in result.certificate.tried
             if p.setting["preserve_rule"] == "guard"]
    assert guard == [(RATIOS[0], 1), (RATIOS[0] / 2, 1), (RATIOS[0] / 2, 2), (RATIOS[0] / 2, 3)]


def test_a_round_that_breaks_keep_is_tried_again_at_the_smaller_ratio(sd2, monkeypatch):
    """Scripted on the point's setting: with the guard rule, round 2 takes the target; at 3 % it also takes 'a star',
    at 2 % (the same round-2 scores, not taken again) it keeps it: the search finds 3 % then 2 %, and the chosen
    setting, given to the plain edit, makes the same mask."""
    import cadiff.calibration.search as search

    now, rounds_scored = {}, []
    try_point, score_round = search._Search.try_point, search.score_round

    def staged(self, line, cfg, *args):
        now.update(cfg=cfg)
        return try_point(self, line, cfg, *args)

    def judge(images, concept):
        cfg = now.get("cfg")
        late = cfg is not None and cfg.rounds >= 2 and cfg.preserve_rule == "guard"
        present = not late if concept == "a circle" else not (late and cfg.ratio_in(cfg.rounds) == RATIOS[-1])
        return np.full(len(images), present)

    def counted(*args, **kwargs):
        rounds_scored.append(kwargs["mask"])
        return score_round(*args, **kwargs)

    monkeypatch.setattr(search._Search, "try_point", staged)
    monkeypatch.setattr(search, "score_round", counted)
    result = calibrated_erase(sd2, "a circle", preserve=KEEP, judge=judge, **FAST)
    tried = [(p.setting["preserve_rule"], p.setting["rounds"], p.setting.get("round_ratios"), p.kept_min)
             for p in result.certificate.tried if p.setting["preserve_rule"]]
    assert tried == [("guard", 1, None, 1.0), ("guard", 1, None, 1.0), ("guard", 2, None, 0.0),
                     ("guard", 2, [RATIOS[-1], RATIOS[0]], 1.0)]
    assert len(rounds_scored) == 1  # the retry re-selected round 2's scores
    assert result.certificate.outcome == "met" and result.config.round_ratios == (RATIOS[-1], RATIOS[0])
    assert "0.03 + 0.02 per row, 2 rounds" in result.certificate.point.label()
    plain = cadiff.erase(sd2, "a circle", cadiff.CADConfig(), preserve=KEEP, preserve_rule="guard",
                         at_steps=result.config.at_steps, round_ratios=result.config.round_ratios,
                         **{k: v for k, v in FAST.items() if "_" not in k})
    assert {n: i.tolist() for n, i in plain.mask.indices.items()} == \
        {n: i.tolist() for n, i in result.mask.indices.items()}


def test_settings_tied_as_the_best_point_are_screened_again_on_their_own_seeds(sd2, monkeypatch):
    """Scripted: on the screening images the target never goes, so every setting ties; on the tie-break images the
    setting with the most weights zeroed takes it away, and is chosen over the fewest-weights default."""
    import cadiff.calibration.search as search

    seen, sizes = {}, []
    original = search.measure

    def measure(pipe, probe, judge, concepts, mask=None, **sampling):
        seen.update(mask=mask, probe=probe)
        if mask is not None and probe.seeds[0] != 150_000:
            sizes.append(len(mask))
        return original(pipe, probe, judge, concepts, mask=mask, **sampling)

    def judge(images, concept):
        gone = seen["probe"].seeds[0] == 150_000 and seen["mask"] is not None and len(seen["mask"]) == max(sizes)
        return np.full(len(images), not (gone and concept == "a circle"))

    monkeypatch.setattr(search, "measure", measure)
    cert = calibrated_erase(sd2, "a circle", preserve=KEEP, judge=judge, **FAST).certificate
    assert len(cert.ties) == len(cert.tried) and {t["order"] for t in cert.ties} == {p.order for p in cert.tried}
    assert cert.point.zeroed == max(sizes) and cert.probes["ties"]["seeds"][0] == 150_000
    best = next(t for t in cert.ties if t["order"] == cert.point.order)
    assert best["target_max"] == 0.5 and "screened again" in cert.text()  # half of the pooled images
    with pytest.raises(ValueError, match="overlap the search's"):
        calibrated_erase(sd2, "a circle", preserve=KEEP, judge=judge, **{**FAST, "tie_seed": 199_990})


def test_rows_too_narrow_for_every_ratio_are_a_clear_error(sd2):
    with pytest.raises(ValueError, match="no setting of the search selects a weight on this model"):
        calibrated_erase(sd2, "a circle", preserve=KEEP, judge=bright, **{**FAST, "scope": "row"})


def test_the_plain_edit_stays_one_argument_away(sd2):
    """The calibrated erase is erase's default; the plain CAD erase is one config away, and a setting of the one
    given to the other is refused by name."""
    from cadiff.editing.methods.esd import ESDConfig

    plain = cadiff.erase(sd2, "a circle", cadiff.CADConfig(ratio=0.25), seeds=1, steps=2, guidance=4.0)
    assert not isinstance(plain, CalibratedEdit) and plain.config.ratio == 0.25
    plain = cadiff.erase(sd2, "a circle", cadiff.CADConfig(), seeds=1, steps=2, guidance=4.0)
    assert not isinstance(plain, CalibratedEdit)
    with pytest.raises(ValueError, match="ratio: chosen by the calibrated erase's search"):
        cadiff.erase(sd2, "a circle", ratio=0.25)
    with pytest.raises(ValueError, match="ratio: chosen by the calibrated erase's search"):
        cadiff.erase(sd2, "a circle", cadiff.CalibratedConfig(), ratio=0.25)
    with pytest.raises(ValueError, match="CADConfig takes no option 'goal_target'"):
        cadiff.erase(sd2, "a circle", cadiff.CADConfig(), ratio=0.25, goal_target=0.1)
    with pytest.raises(ValueError, match="CalibratedConfig takes no option 'iterations'"):
        cadiff.erase(sd2, "a circle", iterations=3)  # ESD's setting: the calibrated erase searches CAD's settings
    with pytest.raises(ValueError, match="method 'esd' does not judge its edit"):
        cadiff.erase(sd2, "a circle", ESDConfig(), judge=bright)


class OnlyShapes(Judge):
    name = "only-shapes"

    def check(self, concepts):
        bad = [c for c in concepts if "circle" not in c and "star" not in c and "square" not in c]
        if bad:
            raise ValueError(f"this judge cannot judge {bad[0]!r}")

    def present(self, images, concept, others=()):
        return np.ones(len(images), bool)


@pytest.mark.parametrize("kwargs, message", [
    ({}, "needs concepts to keep"),
    ({"preserve": KEEP}, "has no judge of its own"),
    ({"preserve": KEEP, "judge": "nosuch.module:fn"}, "cannot load the judge"),
    ({"preserve": KEEP, "judge": "nonsense"}, "unknown judge 'nonsense'"),
    ({"preserve": KEEP, "judge": bright, "goal_target": 1.5}, "goal_target must be in [0, 1]"),
    ({"preserve": KEEP, "judge": bright, "budget": 0}, "budget must be at least one"),
    ({"preserve": ["a red shape"], "judge": OnlyShapes()}, "cannot judge 'a red shape'"),
    ({"preserve": KEEP, "judge": bright, "confirm_seed": 100_003}, "overlap the search's"),
])
def test_bad_input_fails_before_any_model_work(sd2, monkeypatch, kwargs, message):
    import cadiff.calibration.search as search

    monkeypatch.setattr(search, "attribute", lambda *a, **k: pytest.fail("attributed before refusing"))
    monkeypatch.setattr(search, "measure", lambda *a, **k: pytest.fail("generated before refusing"))
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        calibrated_erase(sd2, "a circle", **{**FAST, **kwargs})


JUDGE_FILE = '''
import numpy as np

def judge(images, concept):
    return np.zeros(len(images), bool) if concept == "a circle" else np.ones(len(images), bool)
'''


@pytest.mark.parametrize("kind", ["sd2", "sdxl"])
def test_the_command_runs_end_to_end_with_a_users_judge(kind, tmp_path, capsys):
    tiny_sd(kind).save_pretrained(tmp_path / "model")
    (tmp_path / "judges.py").write_text(JUDGE_FILE)
    (tmp_path / "keep.txt").write_text("# what must survive\na star\n\na square\n")
    code = main(["erase", "a circle", "--preserve-file", str(tmp_path / "keep.txt"),
                 "--judge", f"{tmp_path / 'judges.py'}:judge", "--model", str(tmp_path / "model"),
                 "--steps", "2", "--seeds", "1", "--guidance", "4", "--components", "attn", "--scope", "matrix", "--screen-extra", "2",
                 "--confirm-repeats", "1", "--confirm-max-repeats", "1", "--no-export", "--out", str(tmp_path / "run")])
    out = capsys.readouterr().out
    assert code == 4, out  # one judge, 12 images a concept: met on point estimates, not proven
    cert = json.loads((tmp_path / "run" / "certificate.json").read_text())
    assert cert["outcome"] == "met" and cert["keep"] == KEEP and cert["judge"]["judge"] == "function"
    assert "MET, NOT PROVEN" in out and "a star" in out and "(n=12, kept >= " in out and "not proven (exit 4)" in out
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["settings"]["method"] == "calibrated" and record["edit"]["ratio"] == RATIOS[0]
    for name in ("frontier.png", "grid.png", "mask.safetensors"):
        assert (tmp_path / "run" / name).stat().st_size > 0


def test_a_missed_goal_exits_with_its_own_code_and_keeps_the_best_edit(tmp_path, capsys):
    tiny_sd("sd2").save_pretrained(tmp_path / "model")
    (tmp_path / "judges.py").write_text("import numpy as np\ndef judge(images, concept):\n"
                                        "    return np.ones(len(images), bool)\n")
    code = main(["erase", "a circle", "--preserve", "a star", "--judge", f"{tmp_path / 'judges.py'}:judge",
                 "--model", str(tmp_path / "model"), "--steps", "2", "--seeds", "1", "--guidance", "4",
                 "--components", "attn", "--scope", "matrix", "--budget", "2", "--screen-extra", "0", "--confirm-repeats", "1",
                 "--no-export", "--out", str(tmp_path / "run")])
    out = capsys.readouterr().out
    assert code == 3
    assert "MISSED" in out and "the goal was not met (exit 3)" in out and "a circle still judged present" in out
    assert (tmp_path / "run" / "mask.safetensors").exists()
    assert not json.loads((tmp_path / "run" / "certificate.json").read_text())["passed"]


@pytest.mark.parametrize("argv, message", [
    (["--goal-keep", "2"], "must be in [0, 1]"),
    (["--budget", "0"], "--budget: must be at least 1, got 0"),
])
def test_bad_goal_flags_are_one_line_errors(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit):
        main(["erase", "circle", *argv, "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and not (tmp_path / "x").exists()


def test_calibration_flags_with_a_plain_edit_are_refused(tmp_path, capsys):
    code = main(["erase", "circle", "--method", "cad", "--ratio", "0.02", "--goal-target", "0.1",
                 "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert code == 2 and "--goal-target: not an option of --method cad; --method calibrated takes it" in err
    code = main(["erase", "circle", "--ratio", "0.02", "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert code == 2 and "--ratio: chosen by the calibrated erase's search" in err and "--method cad" in err
    # the judge's flags are the calibrated erase's (and harden's)
    code = main(["erase", "circle", "--method", "esd", "--judge", "world", "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "--judge" in err and "--method calibrated" in err
    code = main(["erase", "circle", "--iterations", "3", "--out", str(tmp_path / "x")])
    assert code == 2 and "--iterations: not an option of --method calibrated; --method esd or cadtrain takes it" in \
        capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_the_embedded_model_defaults_keep_every_other_concept_and_its_judge(shapes_pipe):
    result = cadiff.erase(shapes_pipe, "circle", steps=4, seeds=1, budget=1, screen_extra=0, confirm_repeats=1,
                          confirm_max_repeats=1)
    cert = result.certificate
    assert cert.judge == {"judge": "world", "world": "shapes"} and len(cert.keep) == 14 and "circle" not in cert.keep
    assert cert.judges[1] == {"judge": "pixels", "world": "shapes"} and cert.independent  # confirmed by pixels too
    assert {c.judge for c in cert.confirmation.claims} == {"world:shapes", "pixels:shapes"}
    assert cert.after["circle"].n == 6 and cert.after["solid"].n == 12  # the design: 6 per shape, 12 per texture
    assert len(cert.tried) == 1 and cert.probes["confirm"]["looks"] == [{"images": 36, "seeds": [200_000, 200_035]}]


def test_two_targets_are_calibrated_jointly_one_mask_each_judged(sd2):
    targets = ["a circle", "a red shape"]
    result = calibrated_erase(sd2, targets, preserve=KEEP, judge=lambda images, c: np.full(len(images), c not in targets),
                              **FAST)
    cert = result.certificate
    assert cert.outcome == "met" and set(cert.point.target) == set(targets) and len(result.attributions) == 2
    assert all(cert.after[t].n == 12 for t in targets)
    parts = result.mask.metadata["parts"]  # one mask, united from each target's selection
    assert [p["concepts"] for p in parts] == [[t] for t in targets]
