"""Judges: does a generated image show a concept? One small interface — `present(images, concept, others)` — behind
which sit the world's own judge (the shapes evaluator on the embedded model), CLIP zero-shot, NudeNet for nudity,
and any function a user brings. An erase is judged by one of them; a new judge is one class plus `@register_judge`.

Example:
    >>> from cadiff.evaluation.judges import get_judge
    >>> judge = get_judge("world", pipe=pipe)                            # doctest: +SKIP
    >>> judge.present(images, "circle", others=["square", "star"])       # doctest: +SKIP
    array([ True, False, ...])
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar, Sequence

import numpy as np

from cadiff.files.registry import Registry


class Judge:
    """Says, per image (N, H, W, 3) uint8, whether it shows `concept`; `others` are the alternatives it is told
    apart from (the concepts to keep), where the judge needs them."""

    name: ClassVar[str]

    def present(self, images: np.ndarray, concept: str, others: Sequence[str] = ()) -> np.ndarray:
        raise NotImplementedError

    def info(self) -> dict[str, Any]:
        """What a certificate records about the judge."""
        return {"judge": self.name}


JUDGES = Registry("judge")
register_judge = JUDGES.register


def get_judge(name: str, **options: Any) -> Judge:
    """The judge `name` built with `options` (e.g. `pipe=` for the world judge, `weights=` for CLIP)."""
    return JUDGES.lookup(name)(**options)


@register_judge
class WorldJudge(Judge):
    """The world's own judge (the shapes evaluator on the embedded model): an image shows a concept when the label
    it reads for the concept's attribute is that concept."""

    name = "world"

    def __init__(self, pipe=None, world=None, path=None):
        from cadiff.worlds import world_of

        self.world = world or (world_of(pipe) if pipe is not None else None)
        if self.world is None:
            raise ValueError("the world judge needs a model of a world (the embedded shapes model); for another model "
                             "choose --judge clip (local CLIP weights), nudenet, or pass a function")
        self.judge = self.world.judge(path)

    def present(self, images, concept, others=()):
        attribute = self.world.attribute_of(concept)
        return np.array([label == concept for label in self.judge.predict(images)[attribute]], dtype=bool)

    def info(self):
        return {"judge": self.name, "world": self.world.name}


@register_judge
class CallableJudge(Judge):
    """A user's function `fn(images, concept) -> sequence of bool`."""

    name = "function"

    def __init__(self, fn: Callable[[np.ndarray, str], Sequence[bool]], label: str = "user function"):
        self.fn, self.label = fn, label

    def present(self, images, concept, others=()):
        out = np.asarray(self.fn(images, concept), dtype=bool)
        if out.shape != (len(images),):
            raise ValueError(f"the judge function returned {out.shape} answers for {len(images)} images; return one "
                             "bool per image")
        return out

    def info(self):
        return {"judge": self.name, "function": self.label}


from cadiff.evaluation.judges import clip, nudity  # noqa: E402,F401  (register CLIP zero-shot and NudeNet)
