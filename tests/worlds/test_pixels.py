import numpy as np
import pytest

from cadiff.worlds import World, get_world
from cadiff.worlds.shapes import ATTRIBUTES, render, render_random
from cadiff.worlds.shapes.pixels import PixelReader, nearest_colour
from cadiff.worlds.shapes.world import RGB


@pytest.fixture(scope="module")
def reader():
    return PixelReader()


def test_reads_rendered_images_by_rule(reader):
    batch = render_random(300, seed=77)  # 2,000 renders (seed 1) measured 1.00 on every attribute
    predicted = reader.predict(batch.images)
    for attribute, labels in batch.labels().items():
        names = np.array(ATTRIBUTES[attribute])[labels]
        assert (np.array(predicted[attribute]) == names).mean() >= 0.98, attribute


@pytest.mark.parametrize("texture", ["solid", "outlined"])
def test_blue_violet_is_read_as_the_nearer_colour_in_cielab(reader, texture):
    kw = dict(seed=3, centres=np.array([[16.0, 16.0]]), radii=np.array([10.0]))  # same seed: same background, jitter
    purple, blue = (render(["circle"], [c], [texture], **kw).images[0].astype(float) for c in ("purple", "blue"))
    pure = [render(["circle"], [c], ["solid"], **kw).images[0][16, 16].astype(float) for c in ("purple", "blue")]
    shares = np.linspace(0, 1, 21)
    mixes = np.stack([(t * purple + (1 - t) * blue).round().astype(np.uint8) for t in shares])
    read = reader.predict(mixes)["colour"]
    assert read == nearest_colour(np.stack([t * pure[0] + (1 - t) * pure[1] for t in shares]))
    assert read[0] == "blue" and read[-1] == "purple" and read[10] == "blue"  # half and half looks blue in CIELAB


def test_the_colour_rule_splits_purple_and_blue_by_cielab_not_rgb():
    mix = lambda t: t * np.array(RGB["purple"]) + (1 - t) * np.array(RGB["blue"])  # noqa: E731
    assert nearest_colour(np.stack([mix(0.5), mix(0.6), mix(0.66), mix(1.0)])) == ["blue", "blue", "purple", "purple"]
    assert nearest_colour(np.array([RGB[c] for c in RGB])) == list(RGB)


def test_labels_always_come_from_the_vocabulary(reader):
    rng = np.random.default_rng(0)
    odd = np.full((5, 32, 32, 3), 210, np.uint8)  # blank
    odd[1] = rng.integers(0, 256, (32, 32, 3))  # noise
    odd[2] = 0  # black
    odd[3, 15:17, 15:17] = (30, 60, 220)  # a dot
    odd[4, 2:30, 2:30] = (128, 128, 128)  # a grey block
    images = np.concatenate([odd, render_random(5, seed=2).images])
    for predicted in (reader.predict(images), reader.predict(images.astype(np.float32) / 255)):
        for attribute, values in ATTRIBUTES.items():
            assert len(predicted[attribute]) == len(images) and set(predicted[attribute]) <= set(values)


def test_reads_pil_images_of_any_size_as_the_evaluator_does(reader):
    from PIL import Image

    batch = render_random(6, seed=9)
    as_pil = reader.predict([Image.fromarray(im).resize((64, 64), Image.NEAREST) for im in batch.images])
    assert as_pil == reader.predict(batch.images)


def test_the_shapes_world_has_a_reader_and_a_world_by_default_none():
    assert isinstance(get_world("shapes").reader(), PixelReader)
    assert World().reader() is None
