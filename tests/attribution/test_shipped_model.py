"""On the shipped shapes model: concept words become captions, unknown words fail."""

import pytest


def test_concept_words_and_vocabulary(shapes_pipe):
    import cadiff

    attr = cadiff.attribute(shapes_pipe, "red", seeds=1, steps=3, progress=False)
    assert attr.metadata["prompts"] == ["a red shape"]
    assert attr.metadata["steps"] == 3 and attr.metadata["guidance"] > 1
    assert attr.select(ratio=0.03).fingerprint == cadiff.model_fingerprint(shapes_pipe)
    with pytest.raises(ValueError, match="unknown word 'teal'"):
        cadiff.attribute(shapes_pipe, "teal", progress=False)
