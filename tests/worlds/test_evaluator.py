import numpy as np
import pytest

from cadiff.worlds.shapes import ATTRIBUTES, render_random


def test_shipped_evaluator_reads_fresh_renders(evaluator):
    batch = render_random(900, seed=123_456)  # a seed the training never used
    predicted = evaluator.predict(batch.images)
    for attribute, labels in batch.labels().items():
        names = np.array(ATTRIBUTES[attribute])[labels]
        assert (np.array(predicted[attribute]) == names).mean() >= 0.99, attribute


def test_evaluator_accepts_float_and_pil_images(evaluator):
    from PIL import Image

    batch = render_random(4, seed=9)
    as_float = evaluator.predict(batch.images.astype(np.float32) / 255)
    as_pil = evaluator.predict([Image.fromarray(im).resize((128, 128), Image.NEAREST) for im in batch.images])
    assert as_float == evaluator.predict(batch.images) == as_pil


def test_missing_evaluator_folder(tmp_path):
    from cadiff.worlds.shapes import load_evaluator

    with pytest.raises(FileNotFoundError, match="not a shapes evaluator folder"):
        load_evaluator(tmp_path)
