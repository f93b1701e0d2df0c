"""The shapes world: a procedural renderer with exact labels and masks, and the embedded model's evaluator."""

from cadiff.worlds.shapes.evaluator import ShapesEvaluator, load_evaluator, shipped_path
from cadiff.worlds.shapes.world import (
    ATTRIBUTES,
    COLOURS,
    CONCEPTS,
    SHAPES,
    TEXTURES,
    ShapesBatch,
    attribute_of,
    full_caption,
    render,
    render_random,
    shape_centre,
)

__all__ = [
    "ATTRIBUTES", "COLOURS", "CONCEPTS", "SHAPES", "TEXTURES", "ShapesBatch", "ShapesEvaluator", "attribute_of", "full_caption",
    "load_evaluator", "render", "render_random", "shape_centre", "shipped_path",
]
