"""Fixtures of the evaluation tests: a tiny random SD pipeline and a tiny random shapes evaluator, both on disk."""

import pytest
import torch


@pytest.fixture(scope="session")
def tiny_pipe():
    from tiny_pipelines import tiny_sd

    return tiny_sd("sd1")


@pytest.fixture(scope="session")
def tiny_evaluator(tmp_path_factory):
    from cadiff.worlds.shapes.architecture import EvaluatorConfig, ShapesClassifier
    from cadiff.worlds.shapes.evaluator import save_evaluator

    torch.manual_seed(0)
    cfg = EvaluatorConfig(channels=(4, 8))
    path = tmp_path_factory.mktemp("evaluator") / "evaluator"
    save_evaluator(ShapesClassifier(cfg), cfg, path)
    return path
