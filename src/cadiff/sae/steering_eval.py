"""Scoring steered images on a world (default: the shapes world): did the object land in the target quadrant, does
the judge see the requested colour or texture, and how far did the image move from the unsteered one.

Example:
    >>> from cadiff.sae.steering_eval import change, intact, quadrant_of, spatial_success, style_success
    >>> spatial_success(images, "top-left")               # doctest: +SKIP
    0.75
"""

from __future__ import annotations

import numpy as np

from cadiff.worlds import World, get_world

QUADRANTS = ("top-left", "top-right", "bottom-left", "bottom-right")


def quadrant_of(image: np.ndarray, world: World | None = None) -> str | None:
    """The quadrant holding the centre of the image's object, or None when no object stands out."""
    centre = (world or get_world("shapes")).object_centre(image)
    if centre is None:
        return None
    x, y = centre  # fractions of the image's width and height
    return QUADRANTS[int(y >= 0.5) * 2 + int(x >= 0.5)]


def spatial_success(images: np.ndarray, quadrant: str, world: World | None = None) -> float:
    """Fraction of images whose object centre lies in `quadrant` (chance 0.25)."""
    return float(np.mean([quadrant_of(im, world) == quadrant for im in images]))


def intact(images: np.ndarray, shapes: list[str], colours: list[str], evaluator) -> np.ndarray:
    """Per image, whether the evaluator still reads the prompted shape and colour (the object survived the edit)."""
    seen = evaluator.predict(images)
    return np.array([s == ps and c == pc for s, c, ps, pc in zip(seen["shape"], seen["colour"], shapes, colours)])


def style_success(images: np.ndarray, value: str, evaluator, world: World | None = None) -> float:
    """Fraction of images in which the judge sees `value` (a colour or texture, or a shape)."""
    seen = evaluator.predict(images)[(world or get_world("shapes")).attribute_of(value)]
    return float(np.mean([s == value for s in seen]))


def change(before: np.ndarray, after: np.ndarray) -> float:
    """Mean absolute pixel difference in [0, 1] between unsteered and steered images (not LPIPS)."""
    return float(np.abs(before.astype(np.float32) - after.astype(np.float32)).mean() / 255)
