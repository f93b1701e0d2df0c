"""The world's pixel judge: an image shows a concept when the world's rule-based reader (no training: colour, shape
and texture read from pixels) reads that concept for its attribute. Independent of the trained judge a search
optimises against, it confirms a calibrated erase beside it.

Example:
    >>> judge = get_judge("pixels", pipe=cadiff.load_pipeline())           # doctest: +SKIP
    >>> judge.present(images, "purple")                                     # doctest: +SKIP
"""

from __future__ import annotations

from cadiff.errors import BadInput
from cadiff.evaluation.judges import WorldJudge, register_judge


@register_judge
class PixelJudge(WorldJudge):
    """The world judge reading labels with the world's pixel reader in place of its trained evaluator."""

    name = "pixels"

    def reader(self, path=None):
        reader = self.world.reader()
        if reader is None:
            raise BadInput(f"the {self.world.name} world has no pixel reader; choose another --second-judge")
        return reader
