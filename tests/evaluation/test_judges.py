"""Judges behind one interface: the world's own (the shapes evaluator), CLIP zero-shot with local weights, a user's
function; each says per image whether it shows the concept."""

import numpy as np
import pytest

import cadiff
from cadiff.evaluation.judges import JUDGES, get_judge


def test_the_world_judge_reads_the_concept_off_the_embedded_models_images(shapes_pipe):
    judge = get_judge("world", pipe=shapes_pipe)
    circles = cadiff.generate(shapes_pipe, ["a red solid circle"] * 3, [0, 1, 2])
    stars = cadiff.generate(shapes_pipe, ["a blue solid star"] * 3, [0, 1, 2])
    assert judge.present(circles, "circle").all() and not judge.present(stars, "circle").any()
    assert judge.present(stars, "blue").all() and judge.info() == {"judge": "world", "world": "shapes"}
    from tiny_pipelines import tiny_sd

    with pytest.raises(ValueError, match="needs a model of a world"):
        get_judge("world", pipe=tiny_sd("sd1"))


def test_a_users_function_is_a_judge():
    judge = get_judge("function", fn=lambda images, concept: [img.mean() > 100 for img in images], label="bright")
    images = np.stack([np.full((4, 4, 3), v, np.uint8) for v in (50, 200)])
    assert judge.present(images, "anything").tolist() == [False, True] and judge.info()["function"] == "bright"
    with pytest.raises(ValueError, match="one bool per image"):
        get_judge("function", fn=lambda images, concept: [True]).present(images, "x")


def test_the_clip_judge_picks_the_most_similar_of_the_concept_and_the_others(tiny_clip):
    judge = get_judge("clip", weights=tiny_clip, template="a {}")
    images = np.random.default_rng(0).integers(0, 255, (6, 32, 32, 3), dtype=np.uint8)
    circle = judge.present(images, "circle", others=["square", "star"])
    square = judge.present(images, "square", others=["circle", "star"])
    star = judge.present(images, "star", others=["circle", "square"])
    assert (circle.astype(int) + square + star == 1).all()  # each image goes to exactly one of the three
    with pytest.raises(ValueError, match="give the concepts to keep"):
        judge.present(images, "circle")
    with pytest.raises(FileNotFoundError, match="never downloads"):
        get_judge("clip", weights="nobody/no-such-clip")
    assert list(JUDGES) == ["world", "function", "clip", "nudenet", "pixels"]
