import numpy as np
import pytest

from cadiff.worlds.shapes import COLOURS, SHAPES, TEXTURES, attribute_of, render, render_random, shape_centre
from cadiff.worlds.shapes.world import RGB, training_caption


def test_same_seed_same_images_other_seed_other_images():
    a, b, c = render_random(20, seed=3), render_random(20, seed=3), render_random(20, seed=4)
    assert np.array_equal(a.images, b.images) and np.array_equal(a.masks, b.masks)
    assert not np.array_equal(a.images, c.images)


def test_labels_follow_the_request_and_captions_name_them():
    batch = render(["star", "heart"], ["blue", "orange"], ["striped", "outlined"], seed=0)
    assert [SHAPES[i] for i in batch.shapes] == ["star", "heart"]
    assert batch.captions() == ["a blue striped star", "a orange outlined heart"]


def test_mask_is_the_shape_region_and_foreground_has_the_colour():
    batch = render(["square"], ["red"], ["solid"], seed=1, centres=np.array([[16.0, 16.0]]), radii=np.array([10.0]))
    mask = batch.masks[0]
    # a square of half-side 0.8 * r = 8 px centred at 16: pixel centres 8.5..23.5 are inside
    assert mask[16, 16] and mask[9, 9] and mask[23, 23] and not mask[7, 7] and not mask[24, 24]
    assert mask.sum() == 16 * 16
    inner = batch.images[0][mask & np.pad(np.ones((14, 14), bool), 9)]
    assert np.abs(inner.astype(int).mean(0) - np.array(RGB["red"])).max() <= 15


def test_outlined_interior_is_background_and_striped_is_partly_filled():
    kw = dict(seed=2, centres=np.array([[16.0, 16.0]] * 3), radii=np.array([10.0] * 3))
    solid, striped, outlined = render(["circle"] * 3, ["blue"] * 3, list(TEXTURES), **kw).images
    centre = (slice(12, 20), slice(12, 20))
    bg = outlined[0, 0].astype(int)
    assert np.abs(outlined[centre].astype(int) - bg).max() < 30  # hollow
    fill_diff = np.abs(solid[centre].astype(int) - bg).max(-1)
    assert (fill_diff > 100).all()
    stripe_fraction = (np.abs(striped[centre].astype(int) - bg).max(-1) > 100).mean()
    assert 0.2 < stripe_fraction < 0.8


def test_shapes_stay_inside_the_image():
    batch = render_random(300, seed=5)
    assert not batch.masks[:, 0, :].any() and not batch.masks[:, -1, :].any()
    assert not batch.masks[:, :, 0].any() and not batch.masks[:, :, -1].any()
    assert (batch.masks.sum((1, 2)) > 20).all()


def test_shape_centre_finds_the_rendered_centre():
    centres = np.array([[9.0, 10.0], [22.0, 21.0]])
    batch = render(["circle", "heart"], ["green", "purple"], ["solid", "outlined"], seed=0, centres=centres,
                   radii=np.array([7.0, 7.0]))
    for img, (x, y) in zip(batch.images, centres):
        cx, cy = shape_centre(img)
        assert abs(cx - x) < 1.5 and abs(cy - y) < 1.5


def test_training_captions_cover_partial_and_empty_prompts():
    rng = np.random.default_rng(0)
    caps = [training_caption(0, 1, 2, rng) for _ in range(2000)]
    assert 0.07 < caps.count("") / len(caps) < 0.13
    assert "a green outlined circle" in caps and "a circle" in caps and "a green shape" in caps
    assert all(c == "" or c.startswith("a ") for c in caps)


def test_render_is_fast_enough_for_training_sets():
    batch = render_random(2000, seed=0)
    assert batch.images.shape == (2000, 32, 32, 3) and batch.images.dtype == np.uint8


def test_attribute_of_and_bad_values():
    assert [attribute_of(w) for w in ("heart", "yellow", "striped")] == ["shape", "colour", "texture"]
    with pytest.raises(ValueError, match="not a shapes-world concept"):
        attribute_of("dog")
    with pytest.raises(ValueError, match="unknown value 'pink'"):
        render(["circle"], ["pink"], ["solid"])
    assert len(COLOURS) == 6
