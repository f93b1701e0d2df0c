"""Shared fixtures: the shipped shapes model (loaded once) and tiny random pipelines built from configs."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="session")
def shapes_pipe():
    """The embedded shapes pipeline, as `cadiff.load_pipeline()` returns it."""
    import cadiff

    return cadiff.load_pipeline()


@pytest.fixture(scope="session")
def evaluator():
    from cadiff.worlds.shapes import load_evaluator

    return load_evaluator()


@pytest.fixture()
def shapes_like(tmp_path, monkeypatch):
    """A tiny pipeline saved as a shapes-world model (2 sampling steps), with a tiny evaluator as its judge."""
    import json

    import cadiff.worlds.shapes
    from cadiff.worlds.shapes.architecture import EvaluatorConfig, ShapesClassifier
    from cadiff.worlds.shapes.evaluator import ShapesEvaluator
    from tiny_pipelines import tiny_sd

    folder = tmp_path / "model"
    tiny_sd("sd1").save_pretrained(folder)
    (folder / "cadiff.json").write_text(json.dumps({"world": "shapes", "num_inference_steps": 2, "guidance_scale": 4.0}))
    tiny_eval = ShapesEvaluator(ShapesClassifier(EvaluatorConfig(channels=(4, 4, 4))))
    monkeypatch.setattr(cadiff.worlds.shapes, "load_evaluator", lambda path=None: tiny_eval)
    return folder
