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

import functools
from pathlib import Path
from typing import Any, Callable, ClassVar, Sequence

import numpy as np

from cadiff.errors import BadInput, MissingFile
from cadiff.registry import Registry


class Judge:
    """Says, per image (N, H, W, 3) uint8, whether it shows `concept`; `others` are the alternatives it is told
    apart from (the concepts to keep), where the judge needs them."""

    name: ClassVar[str]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Every judge's `present` is checked: its answer must be one bool (or 0/1) per image (`answers`)."""
        super().__init_subclass__(**kwargs)
        if "present" in vars(cls):
            cls.present = _checked(vars(cls)["present"])

    def present(self, images: np.ndarray, concept: str, others: Sequence[str] = ()) -> np.ndarray:
        raise NotImplementedError

    def check(self, concepts: Sequence[str]) -> None:
        """ValueError naming a concept this judge cannot judge (called before any model work)."""

    def info(self) -> dict[str, Any]:
        """What a certificate records about the judge."""
        return {"judge": self.name}


def answers(out: Any, n: int, judge: str, concept: str) -> np.ndarray:
    """A judge's answer as `n` bools; ValueError naming `judge` unless it is one bool or 0/1 integer per image (a
    score, NaN or a word is never read by its truthiness)."""
    try:
        a = np.asarray(out)
    except (ValueError, TypeError):
        a = np.asarray(out, dtype=object) if isinstance(out, (list, tuple)) else np.asarray(None)
    if a.shape != (n,):
        raise BadInput(f"the judge '{judge}' returned {a.size} answers for {n} images of '{concept}' (shape "
                       f"{a.shape}); return one bool per image")
    if a.dtype == bool or n == 0:
        return a.astype(bool)
    bad = a[(a != 0) & (a != 1)] if a.dtype.kind in "iu" else a
    if not bad.size:
        return a.astype(bool)
    example = bad.flat[0].item() if isinstance(bad.flat[0], np.generic) else bad.flat[0]
    raise BadInput(f"the judge '{judge}' returned {a.dtype} answers (e.g. {example!r}) for '{concept}'; return one "
                   "bool (or 0/1) per image, not a score or a word")


def _checked(present: Callable) -> Callable:
    """`present` whose answer goes through `answers`, under the judge's label (a function's 'MODULE:FUNCTION')."""
    @functools.wraps(present)
    def checked(self: Judge, images: np.ndarray, concept: str, others: Sequence[str] = ()) -> np.ndarray:
        label = getattr(self, "label", None) or self.name
        return answers(present(self, images, concept, others), len(images), label, concept)

    return checked


JUDGES = Registry("judge")
register_judge = JUDGES.register


def get_judge(name: str, **options: Any) -> Judge:
    """The judge `name` built with `options` (e.g. `pipe=` for the world judge, `weights=` for CLIP)."""
    return JUDGES.lookup(name)(**options)


def as_judge(spec: "Judge | str | Callable | None", pipe=None, **options: Any) -> Judge:
    """A judge from what a user gives: a Judge; a registered name ('world', 'clip', 'nudenet'; `options` go to it);
    'MODULE:FUNCTION' or 'FILE.py:FUNCTION' naming a function (images, concept) -> bools; a function itself; or
    None: the world's judge on a model of a world. ValueError naming the problem otherwise, before any model work."""
    if isinstance(spec, Judge):
        return spec
    if spec is None:
        if pipe is None or _world(pipe) is None:
            raise BadInput("this model has no judge of its own (only the embedded shapes model has one): choose "
                           "--judge clip (local CLIP weights), nudenet, or MODULE:FUNCTION (judge=...)")
        return WorldJudge(pipe=pipe)
    if callable(spec):
        return CallableJudge(spec, label=getattr(spec, "__qualname__", repr(spec)))
    if ":" in spec:
        return CallableJudge(_load_function(spec), label=spec)
    if spec not in JUDGES:
        raise BadInput(f"unknown judge '{spec}': choose one of {', '.join(JUDGES)} or MODULE:FUNCTION")
    return get_judge(spec, **({"pipe": pipe} if issubclass(JUDGES.lookup(spec), WorldJudge) else {}), **options)


def _world(pipe):
    from cadiff.worlds import world_of

    return world_of(pipe)


def _load_function(spec: str) -> Callable:
    """The function named 'MODULE:FUNCTION' or 'FILE.py:FUNCTION'."""
    import importlib
    import importlib.util

    where, _, name = spec.rpartition(":")
    try:
        if where.endswith(".py"):
            loader = importlib.util.spec_from_file_location(Path(where).stem, where)
            if loader is None or not Path(where).is_file():
                raise MissingFile(where)
            module = importlib.util.module_from_spec(loader)
            loader.loader.exec_module(module)
        else:
            module = importlib.import_module(where)
    except (ImportError, FileNotFoundError) as exc:
        raise BadInput(f"cannot load the judge '{spec}': {exc}; give MODULE:FUNCTION or FILE.py:FUNCTION") from None
    fn = getattr(module, name, None)
    if not callable(fn):
        raise BadInput(f"the judge '{spec}': {where} has no function '{name}'")
    return fn


@register_judge
class WorldJudge(Judge):
    """The world's own judge (the shapes evaluator on the embedded model): an image shows a concept when the label
    it reads for the concept's attribute is that concept."""

    name = "world"

    def __init__(self, pipe=None, world=None, path=None):
        self.world = world or (_world(pipe) if pipe is not None else None)
        if self.world is None:
            raise BadInput("the world judge needs a model of a world (the embedded shapes model); for another model "
                           "choose --judge clip (local CLIP weights), nudenet, or pass a function")
        self.judge = self.reader(path)

    def reader(self, path=None):
        """What reads the world's labels off images (`.predict(images) -> {attribute: labels}`): its evaluator."""
        return self.world.judge(path)

    def check(self, concepts):
        unknown = [c for c in concepts if c not in self.world.concepts()]
        if unknown:
            raise BadInput(f"the {self.world.name} world's judge cannot judge {', '.join(map(repr, unknown))}: it "
                           f"knows {', '.join(self.world.concepts())}")

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
        return self.fn(images, concept)  # checked like every judge's answer (`answers`)

    def info(self):
        return {"judge": self.name, "function": self.label}


from cadiff.evaluation.judges import clip, nudity, pixels  # noqa: E402,F401  (register CLIP, NudeNet, pixels)
