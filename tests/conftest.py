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
