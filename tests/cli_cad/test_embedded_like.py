"""On a model marked as a shapes-world model (cadiff.json), concept words become captions and erase reports the
evaluator's accuracies per concept; the evaluation design names every concept evenly."""

import json
from collections import Counter

import pytest

from cadiff.cli import main
from cadiff.editing.goal import best_round, next_step
from cadiff.evaluation.accuracy import edit_metrics, evaluation_prompts
from cadiff.worlds.shapes.world import CONCEPTS


def test_evaluation_design_is_balanced():
    prompts = evaluation_prompts(2)
    words = Counter(w for p in prompts for w in p.split())
    assert len(prompts) == 72
    assert all(words[c] == (24 if c in ("solid", "striped", "outlined") else 12) for c in CONCEPTS)


def test_edit_metrics():
    before = {c: 1.0 for c in CONCEPTS}
    after = {**before, "circle": 0.1, "red": 0.9}
    m = edit_metrics(before, after, ["circle"])
    assert m["target_before"] == 1.0 and m["target_after"] == 0.1
    assert m["kept_min"] == 0.9 and m["kept_min_concept"] == "red"


def test_next_step_names_what_to_change():
    missed = {"target_before": 1.0, "target_after": 0.9, "kept_min": 1.0}
    assert "--components linear" in next_step(missed, "erase", "ff")
    assert "--components linear," not in next_step(missed, "erase", "linear")
    paid = {**missed, "target_after": 0.0, "kept_min": 11 / 12, "kept_min_concept": "striped"}
    assert "smaller --ratio" in next_step(paid, "erase", "ff")
    assert "one image of 12" in next_step(paid, "erase", "ff", images=12)  # one image: measure more first
    assert "smaller --ratio" in next_step({**paid, "kept_min": 10 / 12}, "erase", "ff", images=12)
    assert "--at-steps early" in next_step({**paid, "kept_min": 10 / 12}, "erase", "ff", images=12)
    assert "--at-steps" not in next_step({**paid, "kept_min": 10 / 12}, "erase", "ff", images=12, at_steps="early")
    assert "--at-steps" not in next_step({**paid, "kept_min": 10 / 12}, "amplify", "ff", images=12)
    assert "--preserve-rule guard" in next_step({**paid, "kept_min": 10 / 12}, "erase", "ff", images=12)
    assert "--preserve" not in next_step({**paid, "kept_min": 10 / 12}, "amplify", "ff", images=12)
    assert next_step({**missed, "target_after": 0.1}, "erase", "ff") is None  # erased, others kept: nothing to say
    assert next_step({**missed, "target_after": 1.0}, "amplify", "ff") is None


def _run(model, out, capsys, *argv: str) -> str:
    """Run one cadiff command on `model` into `out`; its stdout (the command must succeed)."""
    code = main([*argv, "--seeds", "1", "--model", str(model), "--out", str(out)])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    return printed.out


def test_erase_reports_accuracies_and_expands_concept_words(shapes_like, tmp_path, capsys):
    out = _run(shapes_like, tmp_path / "run", capsys, "erase", "circle", "--method", "cad", "--preserve", "square",
               "star", "--ratio", "0.25")
    record = json.loads((tmp_path / "run/run.json").read_text())
    assert record["edit"]["prompts"] == ["a circle"]
    metrics = json.loads((tmp_path / "run/metrics.json").read_text())
    assert set(metrics["before"]) == set(CONCEPTS) and 0 <= metrics["target_after"] <= 1
    assert "target accuracy" in out
    exported = json.loads((tmp_path / "run/pipeline/scheduler/scheduler_config.json").read_text())
    assert exported["_cadiff"]["world"] == "shapes"  # the model's settings travel along, in its scheduler config


def test_preserve_others_keeps_every_concept_the_targets_do_not_name(shapes_like, tmp_path, capsys):
    _run(shapes_like, tmp_path / "run", capsys, "attribute", "a red circle", "--preserve-others", "--preserve-rule",
         "guard")
    kept = [c for c in CONCEPTS if c not in ("red", "circle")]
    assert json.loads((tmp_path / "run/run.json").read_text())["settings"]["preserve"] == kept
    from cadiff.attribution import Attribution

    meta = Attribution.load(tmp_path / "run/a_red_circle.attr.safetensors").metadata
    assert meta["preserve"] == kept and len(meta["J_preserve"]) == 13
    with pytest.raises(SystemExit):  # one way to name the concepts to keep
        main(["attribute", "circle", "--preserve", "square", "--preserve-others", "--out", str(tmp_path / "x")])


def test_erase_in_rounds_measures_and_keeps_every_round(shapes_like, tmp_path, capsys):
    from cadiff.editing import Mask

    out = _run(shapes_like, tmp_path / "run", capsys, "erase", "circle", "--method", "cad", "--rounds", "2",
               "--ratio", "0.1", "--no-export")
    metrics = json.loads((tmp_path / "run/metrics.json").read_text())
    first, last = metrics["rounds"]
    assert (first["round"], last["round"]) == (1, 2) and last["mask"] == "mask.safetensors"
    assert last["after"] == metrics["after"] and set(first["after"]) == set(CONCEPTS)
    one, both = Mask.load(tmp_path / "run" / first["mask"]), Mask.load(tmp_path / "run/mask.safetensors")
    assert 0 < len(one) == first["zeroed"] < len(both) == last["zeroed"]
    assert "after round 1: target" in out and "after round 2: target" in out
    code = main(["apply", str(tmp_path / "run" / first["mask"]), "--model", str(shapes_like),
                 "--out", str(tmp_path / "round1")])
    assert code == 0 and (tmp_path / "round1/model_index.json").is_file()


def test_best_round_keeps_the_others_first():
    rows = [{"round": 1, "target_after": 0.3, "kept_min": 1.0, "zeroed": 10},
            {"round": 2, "target_after": 0.0, "kept_min": 0.96, "zeroed": 20},
            {"round": 3, "target_after": 0.0, "kept_min": 0.9, "zeroed": 30}]
    assert best_round(rows)["round"] == 2
    assert best_round(rows[2:]) is None
    assert best_round([{**rows[1], "round": 4, "zeroed": 25}, rows[1]])["round"] == 2  # fewer weights on a tie


def test_a_two_target_erase_prints_each_target(shapes_like, tmp_path, capsys):
    out = _run(shapes_like, tmp_path / "run", capsys, "erase", "circle", "red", "--method", "cad", "--ratio", "0.25",
               "--no-export")
    line = next(ln for ln in out.splitlines() if ln.startswith("target accuracy"))
    assert "circle " in line and "red " in line and line.count("->") == 3  # each target, then the others
