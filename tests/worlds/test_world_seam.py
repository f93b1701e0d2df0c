"""The library asks the pipeline's world: the shapes model has one, a user's model none; the world's one accuracy
engine gives `cadiff erase` and `cadiff evaluate` the same numbers on the same images."""

import pytest
import torch

from cadiff.evaluation.accuracy import concept_accuracies
from cadiff.evaluation import evaluate, load_prompts
from cadiff.models.loading import mark_model
from cadiff.worlds import WORLDS, World, get_world, register_world, world_of
from tiny_pipelines import tiny_sd


def test_the_shapes_model_has_its_world_and_a_users_model_none(shapes_pipe):
    world = world_of(shapes_pipe)
    assert world.name == "shapes" and len(world.concepts()) == 15
    assert world.concept_prompt("circle") == "a circle" and world.concept_prompt("red") == "a red shape"
    assert world.concept_prompt("a teal thing") == "a teal thing"
    assert world.others(["a red circle"]) == [c for c in world.concepts() if c not in ("red", "circle")]
    assert world_of(tiny_sd("sd1")) is None
    with pytest.raises(ValueError, match="belongs to no world"):
        concept_accuracies(tiny_sd("sd1"))


def test_erase_and_evaluate_measure_with_one_engine(tmp_path):
    from cadiff.worlds.shapes.architecture import EvaluatorConfig, ShapesClassifier
    from cadiff.worlds.shapes.evaluator import ShapesEvaluator, save_evaluator

    pipe = tiny_sd("sd1")
    mark_model(pipe, {"world": "shapes", "num_inference_steps": 2, "guidance_scale": 4.0})
    torch.manual_seed(3)
    cfg = EvaluatorConfig(channels=(4, 8))
    model = ShapesClassifier(cfg)
    save_evaluator(model, cfg, tmp_path / "judge")
    from cadiff.evaluation.judges import WorldJudge

    judge = WorldJudge(pipe, path=tmp_path / "judge")
    by_erase = concept_accuracies(pipe, judge, repeats=1, seed=1000, batch_size=64)
    # the same batching (one batch of the 36 rows) on both sides: batch size changes a matmul's rounding, and an
    # exact comparison of accuracies holds only for the same computation
    summary = evaluate(pipe, load_prompts("shapes-balanced", seed=1000), tmp_path / "eval", metrics=["shapes"],
                       metric_options={"judge_weights": str(tmp_path / "judge")}, batch_size=64)
    by_evaluate = {c: v["target"] for c, v in summary["metrics"]["shapes"]["per_concept"].items()}
    assert by_evaluate == {c: round(v, 4) for c, v in by_erase.items()}
    assert len(set(by_erase.values())) > 1  # a random judge: the numbers differ, so the match means something
    assert isinstance(judge.judge, ShapesEvaluator)


def test_a_new_world_is_one_registered_class(monkeypatch):
    @register_world
    class Dots(World):
        name = "dots-test"

        def attributes(self):  # all a world must say for concepts, attribute_of, others and accuracy
            return {"count": ("one", "two")}

    monkeypatch.setitem(WORLDS, Dots.name, Dots)  # removed again after the test
    pipe = tiny_sd("sd1")
    mark_model(pipe, {"world": "dots-test"})
    world = world_of(pipe)
    assert isinstance(world, Dots) and world.others(["one"]) == ["two"] and world.attribute_of("two") == "count"
    assert world.accuracy({"count": ["one", "two", "two"]}, [{"count": "one"}, {"count": "one"}, {"count": "two"}]) \
        == {"one": 0.5, "two": 1.0}
    with pytest.raises(ValueError, match="unknown world 'nowhere'"):
        get_world("nowhere")
