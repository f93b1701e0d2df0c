"""Hardening against the learned token: a round zeroes the token's top guarded scores while the token brings the
concept back and the kept concepts hold; it stops when the token fails, and undoes a round that breaks a kept
concept."""

import json

import numpy as np
import pytest

import cadiff
from cadiff.attacks import HardenConfig, harden
from cadiff.cli import main

TOKEN = {"token_steps": 2, "token_images": 4, "token_batch": 2}  # the learned token's settings: HardenConfig's
CAD = {"components": "attn", "scope": "matrix", "seeds": 1}  # the erase's
HARD = {**TOKEN, "components": "attn", "scope": "matrix", "success_per_prompt": 1}  # CAD's 16 trajectories a round
KEEP = ["square", "red"]


@pytest.fixture
def erased(shapes_like):
    pipe = cadiff.load_pipeline(str(shapes_like))
    return pipe, cadiff.erase(pipe, "circle", cadiff.CADConfig(), ratio=0.1, progress=False, **CAD).mask


def always(value):
    return lambda images, concept: np.full(len(images), value)


def test_rounds_go_on_while_the_token_brings_the_concept_back(erased):
    pipe, mask = erased
    result = harden(pipe, mask, "circle", preserve=KEEP, judge=always(True),
                    config=HardenConfig(harden_rounds=2, harden_ratios=(0.05,)), **HARD)
    log = result.info["hardening"]
    assert [s["outcome"] for s in log] == ["zeroed", "zeroed"] and log[0]["token_success"] == 1.0
    sizes = [len(result.rounds[k]) for k in (1, 2, 3)]
    assert sizes[0] == len(mask) < sizes[1] < sizes[2] == len(result.mask)
    first = {n: set(i.tolist()) for n, i in mask.indices.items()}
    grown = {n: set(i.tolist()) for n, i in result.mask.indices.items()}
    assert all(first[n] <= grown[n] for n in first)  # the erase's weights stay zeroed
    assert result.mask.fingerprint == mask.fingerprint == cadiff.model_fingerprint(pipe)
    assert result.info["prompt"] == "a <concept>" and result.attributions[0].metadata["preserve"] == KEEP


def test_a_token_that_fails_stops_the_hardening_with_the_mask_unchanged(erased):
    pipe, mask = erased
    judge = lambda images, concept: np.full(len(images), concept != "circle")  # noqa: E731
    result = harden(pipe, mask, "circle", preserve=KEEP, judge=judge, **HARD)
    assert len(result.info["hardening"]) == 1 and result.info["hardening"][0]["outcome"].startswith("held")
    assert len(result.mask) == len(mask)


def test_a_round_that_breaks_a_kept_concept_is_undone(erased, monkeypatch):
    import cadiff.attacks.defence as defence

    pipe, mask = erased
    original = defence.measure
    state = {"grown": False}

    def measure(p, probe, judge, concepts, mask=None, **kw):
        state["grown"] = mask is not None
        return original(p, probe, judge, concepts, mask=mask, **kw)

    monkeypatch.setattr(defence, "measure", measure)
    judge = lambda images, concept: np.full(len(images), concept == "circle" or not state["grown"])  # noqa: E731
    result = harden(pipe, mask, "circle", preserve=KEEP, judge=judge, **HARD)
    step = result.info["hardening"][0]
    assert step["outcome"].startswith("undone") and [t["ratio"] for t in step["tries"]] == [0.02, 0.01, 0.005]
    assert all(t["kept_min"] == 0.0 and t["added"] > 0 for t in step["tries"])
    assert len(result.mask) == len(mask) and list(result.rounds) == [1]


def test_a_round_that_costs_a_kept_concept_is_tried_again_at_the_smaller_ratio(erased, monkeypatch):
    import cadiff.attacks.defence as defence

    pipe, mask = erased
    original = defence.measure
    state = {"added": None, "first": None}

    def measure(p, probe, judge, concepts, mask=None, **kw):
        state["added"] = None if mask is None else len(mask) - base
        if state["added"] is not None and state["first"] is None:
            state["first"] = state["added"]
        return original(p, probe, judge, concepts, mask=mask, **kw)

    def judge(images, concept):
        broken = state["added"] is not None and state["added"] > 0.75 * state["first"]
        return np.full(len(images), concept == "circle" or not broken)

    base = len(mask)
    monkeypatch.setattr(defence, "measure", measure)
    result = harden(pipe, mask, "circle", preserve=KEEP, judge=judge, 
                    config=HardenConfig(harden_rounds=1, harden_ratios=(0.1, 0.05)), **HARD)
    step = result.info["hardening"][0]
    assert [t["ratio"] for t in step["tries"]] == [0.1, 0.05] and step["outcome"] == "zeroed"
    assert step["tries"][0]["kept_min"] == 0.0 and step["tries"][1]["kept_min"] == 1.0
    assert len(result.mask) == base + step["tries"][1]["added"] and step["ratio"] == 0.05


@pytest.mark.parametrize("kwargs, message", [
    ({"config": HardenConfig(harden_keep=0.9)}, None),
    ({"ratio": 0.1}, "the hardening zeroes --harden-ratios per round"),
    ({"preserve": ["square", "nosuch"]}, "unknown word 'nosuch'"),
])
def test_bad_input_fails_before_any_model_work(erased, monkeypatch, kwargs, message):
    import cadiff.attacks.defence as defence

    pipe, mask = erased
    if message is None:
        with pytest.raises(ValueError, match=r"harden_keep must be in \[0, 1\]"):
            HardenConfig(harden_keep=1.5)
        return
    monkeypatch.setattr(defence, "learn_token", lambda *a, **k: pytest.fail("learned before refusing"))
    monkeypatch.setattr(defence, "measure", lambda *a, **k: pytest.fail("generated before refusing"))
    with pytest.raises(ValueError, match=message):
        harden(pipe, mask, "circle", judge=always(True), **{**HARD, **kwargs})


def test_a_mask_of_another_model_is_refused(erased):
    from tiny_pipelines import tiny_sd

    _, mask = erased
    with pytest.raises(ValueError, match="this mask was made with model"):
        harden(tiny_sd("sd2"), mask, "a circle", preserve=["a square"], judge=always(True), **HARD)


def test_cadiff_harden_writes_the_hardened_edit(shapes_like, tmp_path, capsys):
    common = ["--model", str(shapes_like)]
    assert main(["erase", "circle", "--method", "cad", "--ratio", "0.1", "--scope", "matrix", "--components", "attn",
                 "--seeds", "1", "--no-export", "--out", str(tmp_path / "erase"), *common]) == 0
    argv = ["harden", str(tmp_path / "erase"), "circle", "--preserve", *KEEP, "--harden-rounds", "1", "--token-steps",
            "2", "--token-images", "4", "--token-batch", "2", "--no-export", "--out", str(tmp_path / "hard"), *common]
    assert main(argv) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    info = json.loads((tmp_path / "hard" / "hardening.json").read_text())
    assert len(info["hardening"]) == 1 and "round 1: the learned token brings 'circle' back" in out
    assert (tmp_path / "hard" / "mask.safetensors").is_file() and (tmp_path / "hard" / "report.html").is_file()
    assert main([*argv[:-4], "--out", str(tmp_path / "bad"), "--harden-keep", "2", *common]) == 2
    assert "harden_keep must be in [0, 1]" in capsys.readouterr().err and not (tmp_path / "bad").exists()
    assert main(["harden", str(tmp_path / "nothing"), "circle", "--out", str(tmp_path / "bad"), *common]) == 2
    assert "neither a mask file nor a run folder" in capsys.readouterr().err


def test_a_round_that_brings_the_concept_back_by_its_own_prompts_is_undone(erased, monkeypatch):
    """Scripted: the learned token shows the concept; any weight zeroed beyond the erase brings it back by its own
    prompts too. Every ratio fails that check, so the round is undone."""
    import cadiff.attacks.defence as defence
    from cadiff.attacks.token import TOKEN as WORD
    from cadiff.models.loading import denoiser

    pipe, mask = erased
    zeros = lambda p: sum(int((w == 0).sum()) for w in denoiser(p).parameters())  # noqa: E731
    erased_zeros = zeros(cadiff.editing.edited_copy(pipe, mask))
    state = {}
    success = defence.Target.success

    def watched(self, p, texts, seed=0):
        state["pipe"] = p
        return success(self, p, texts, seed=seed)

    def judge(images, concept):
        p = state["pipe"]
        shown = WORD in p.tokenizer.get_vocab() or zeros(p) > erased_zeros
        return np.full(len(images), shown if concept == "circle" else True)

    monkeypatch.setattr(defence.Target, "success", watched)
    state["pipe"] = pipe
    result = harden(pipe, mask, "circle", preserve=KEEP, judge=judge, **HARD)
    step = result.info["hardening"][0]
    assert result.info["concept_before"] == 0.0 and step["token_success"] == 1.0
    assert step["outcome"].startswith("undone") and [t["concept"] for t in step["tries"]] == [1.0, 1.0, 1.0]
    assert len(result.mask) == len(mask)


def test_token_and_concept_targets_score_both_prompts_and_cut_their_union(erased, monkeypatch):
    import cadiff.attacks.defence as defence

    pipe, mask = erased
    scored = []
    score_round = defence.score_round

    def spy(p, concepts, cfg, **kw):
        scored.append(list(concepts.targets))
        return score_round(p, concepts, cfg, **kw)

    monkeypatch.setattr(defence, "score_round", spy)
    run = lambda how: harden(pipe, mask, "circle", preserve=KEEP, judge=always(True),  # noqa: E731
                             config=HardenConfig(harden_rounds=1, harden_ratios=(0.05,), harden_with=how), **HARD)
    alone, both = run("token"), run("token+concept")
    assert scored == [["a <concept>"], ["a <concept>", "a circle"]] and both.info["targets"] == scored[1]
    token_only = {n: set(i.tolist()) for n, i in alone.mask.indices.items()}
    union = {n: set(i.tolist()) for n, i in both.mask.indices.items()}
    assert all(token_only[n] <= union.get(n, set()) for n in token_only) and len(both.mask) > len(alone.mask)
    with pytest.raises(ValueError, match="harden_with must be one of token, token\\+concept"):
        HardenConfig(harden_with="word")


def test_the_text_group_confines_the_rounds_to_the_cross_attention_keys_and_values(erased):
    pipe, mask = erased
    result = harden(pipe, mask, "circle", preserve=KEEP, judge=always(True),  # 0.001 selects nothing
                    config=HardenConfig(harden_rounds=1, harden_ratios=(0.001, 0.5)), **{**HARD, "components": "text",
                                                                                         "scope": "row"})
    assert [t["ratio"] for t in result.info["hardening"][0]["tries"]] == [0.001, 0.5]
    assert result.info["hardening"][0]["tries"][0]["outcome"] == "selects nothing"
    first = {n: set(i.tolist()) for n, i in mask.indices.items()}
    added = {n for n, i in result.mask.indices.items() if set(i.tolist()) - first.get(n, set())}
    assert added and all(n.endswith(("attn2.to_k.weight", "attn2.to_v.weight")) for n in added)


def test_a_round_whose_every_ratio_selects_nothing_is_undone_and_says_so(erased):
    pipe, mask = erased
    result = harden(pipe, mask, "circle", preserve=KEEP, judge=always(True),
                    config=HardenConfig(harden_rounds=1, harden_ratios=(0.001,)), **{**HARD, "scope": "row"})
    assert result.info["hardening"][0]["outcome"].startswith("undone: no ratio selects a weight")
    assert len(result.mask) == len(mask)
