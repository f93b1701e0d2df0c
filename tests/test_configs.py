"""A method is its config: every registered config round-trips through JSON, the config's class picks the method,
keyword options are mapped onto the config once, and the concepts are checked once on the way down."""

import importlib
import json

import pytest

import cadiff
from cadiff.editing.methods import METHODS, default_method, method_for
from tiny_pipelines import tiny_sd

NON_DEFAULT = {"cad": {"round_ratios": (0.02, 0.03), "seeds": [3, 5], "at_steps": [0, 1], "scope": "matrix"},
               "esd": {"variant": "x", "seed": 7}, "prune": {"sparsity": 0.05, "seed": 2},
               "magnitude": {"count": 9}, "calibrated": {"goal_target": 0.1, "seeds": 8, "confidence": 0.9},
               "harden": {"harden_ratios": (0.05,), "token_steps": 7, "success_per_prompt": 2},
               "cadtrain": {"ratio": 0.02, "iterations": 7, "keep_weight": 0.5, "at_steps": [0, 1]}}


@pytest.mark.parametrize("name", list(METHODS))
def test_every_config_round_trips_through_json_and_picks_its_method(name):
    cls = METHODS[name].config_class
    for config in (cls(), cls(**NON_DEFAULT[name])):
        again = cls.from_dict(json.loads(json.dumps(config.to_dict())))
        assert again == config and type(again) is cls
        assert type(method_for(again)) is METHODS[name]


def test_the_defaults_are_the_calibrated_erase_and_cad_amplify():
    assert default_method("erase").name == "calibrated" and default_method("amplify").name == "cad"


def test_an_unknown_key_or_a_searched_setting_is_refused_by_name():
    with pytest.raises(ValueError, match="takes no option 'sedes'"):
        cadiff.CADConfig.from_dict({"sedes": 4})
    with pytest.raises(ValueError, match="ratio: chosen by the calibrated erase's search.*CADConfig"):
        cadiff.CalibratedConfig().with_options(ratio=0.02)


def test_sharded_accumulators_are_refused_in_one_process_and_where_the_model_is_edited_after():
    with pytest.raises(ValueError, match="splits the model across processes; launch several .*torchrun"):
        cadiff.AttributionConfig(accumulators="sharded")
    from cadiff.editing.methods.cadtrain import CADTrainConfig

    for cls in (cadiff.CADConfig, cadiff.CalibratedConfig, cadiff.HardenConfig, CADTrainConfig):
        with pytest.raises(ValueError, match="offered by `cadiff attribute` only; use accumulators='cpu'"):
            cls(accumulators="sharded")
    with pytest.raises(ValueError, match="accumulators must be one of device, cpu, sharded, got 'gpu'"):
        cadiff.AttributionConfig(accumulators="gpu")


def test_a_setting_of_the_search_given_to_erase_is_refused_before_any_model_work(monkeypatch):
    attribute_module = importlib.import_module("cadiff.attribution.attribute")  # the module, not the function
    monkeypatch.setattr(attribute_module, "_attribute", lambda *a, **k: pytest.fail("scored before refusing"))
    with pytest.raises(ValueError, match="ratio: chosen by the calibrated erase's search"):
        cadiff.erase(tiny_sd("sd1"), "a circle", ratio=0.02)  # no silent switch to the plain edit


def test_keyword_options_override_the_config_once():
    config = cadiff.CADConfig(ratio=0.1, components="attn")
    assert config.with_options(seeds=2) == cadiff.CADConfig(ratio=0.1, components="attn", seeds=2)
    assert cadiff.CADConfig().with_options(count=5).ratio is None  # a count replaces the default ratio


def test_the_concepts_are_checked_once_from_erase_down_to_the_scores(monkeypatch):
    import cadiff.attribution.concepts as concepts

    calls = {"prompts": 0, "words": 0}
    prompts, words = concepts.concept_prompts, concepts.check_known_words

    def counted_prompts(*a, **k):
        calls["prompts"] += 1
        return prompts(*a, **k)

    def counted_words(*a, **k):
        calls["words"] += 1
        return words(*a, **k)

    from cadiff.attribution.objectives import Objective

    checked = Objective.check

    def counted_check(self, **kwargs):
        calls["objective"] += 1
        return checked(self, **kwargs)

    calls["objective"] = 0
    monkeypatch.setattr(concepts, "concept_prompts", counted_prompts)
    monkeypatch.setattr(concepts, "check_known_words", counted_words)
    monkeypatch.setattr(Objective, "check", counted_check)
    result = cadiff.erase(tiny_sd("sd1"), "a circle", cadiff.CADConfig(ratio=0.1, components="attn", rounds=2,
                                                                      seeds=1, steps=2), preserve=["a square"],
                          progress=False)
    assert len(result.rounds) == 2 and calls == {"prompts": 1, "words": 1, "objective": 1}
