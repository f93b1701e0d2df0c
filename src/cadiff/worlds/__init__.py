"""Worlds: a model trained on a world whose images can be judged exactly carries the world's name (in its
scheduler config, see `cadiff.models.loading.model_info`), and the library asks the pipeline's world — never "is
this the toy model" — for its concept vocabulary, the prompt a concept word becomes, the concepts to keep, the
balanced evaluation design, the judge, and per-concept accuracy (the one engine every edit report, evaluation and
bench uses). A user's model has no world. A new world is one module plus its `@register_world`.

Example:
    >>> import cadiff
    >>> from cadiff.worlds import world_of
    >>> world = world_of(cadiff.load_pipeline())                # the shapes world
    >>> world.concept_prompt("red"), world.others(["circle"])[:2]
    ('a red shape', ['square', 'triangle'])
"""

from __future__ import annotations

from typing import Any, ClassVar, Sequence

from cadiff.errors import BadInput
from cadiff.registry import Registry
from cadiff.models.loading import model_info


class World:
    """What cadiff needs to know of a world; every concept is one answer to one question (its `attribute`)."""

    name: ClassVar[str]

    def attributes(self) -> dict[str, tuple[str, ...]]:
        """Each question the world's images answer, with its possible answers (the concepts), in a fixed order."""
        raise NotImplementedError

    def concepts(self) -> tuple[str, ...]:
        """Every concept of the world, in a fixed order."""
        return tuple(c for values in self.attributes().values() for c in values)

    def attribute_of(self, concept: str) -> str:
        """The question `concept` answers (the shapes world: shape, colour or texture); ValueError if none."""
        for attribute, values in self.attributes().items():
            if concept in values:
                return attribute
        raise BadInput(f"'{concept}' is not a concept of the {self.name} world; known: {', '.join(self.concepts())}")

    def concept_prompt(self, concept: str) -> str:
        """The prompt a bare concept word becomes ('circle' -> 'a circle'); other text is returned as it is."""
        return concept

    def others(self, targets: Sequence[str]) -> list[str]:
        """Every concept the targets do not name (a target may be a prompt: 'a red circle' names red and circle)."""
        named = {w for t in targets for w in t.split()}
        return [c for c in self.concepts() if c not in named]

    def prompts_naming(self, concept: str, n: int, seed: int = 0) -> list[str]:
        """n prompts that name `concept`, the rest drawn at random (reproducible from `seed`)."""
        raise NotImplementedError

    def training_prompts(self, n: int, seed: int = 0) -> list[str]:
        """n captions drawn as the model's training drew them (attributes left open at random), from `seed`."""
        raise NotImplementedError

    def design(self, repeats: int = 1) -> list[tuple[str, dict[str, str]]]:
        """The balanced evaluation design: (prompt, exact labels) pairs that name every concept evenly."""
        raise NotImplementedError

    def labels_of(self, prompt: str) -> dict[str, str]:
        """The labels a prompt names, by attribute."""
        raise NotImplementedError

    def judge(self, path=None):
        """The judge of the world's images: `.predict(images) -> {attribute: [label per image]}`."""
        raise NotImplementedError

    def reader(self):
        """An independent judge of the world's images read by rules from pixels (no training), with the judge's
        `.predict` contract; None when the world has none."""
        return None

    def accuracy(self, predicted: dict[str, Sequence[str]], labels: Sequence[dict[str, str]],
                 concepts: Sequence[str] | None = None) -> dict[str, float | None]:
        """The one accuracy engine: per concept, the share of the images labelled with it whose judged label for
        its attribute is it (None when no image is labelled with it)."""
        out = {}
        for concept in concepts or self.concepts():
            attribute = self.attribute_of(concept)
            hits = [predicted[attribute][i] == concept for i, lab in enumerate(labels) if lab.get(attribute) == concept]
            out[concept] = sum(hits) / len(hits) if hits else None
        return out

    def phrasings(self, concept: str) -> list[str]:
        """Every prompt the vocabulary allows that asks for `concept`: alone, with every other attribute, words
        reordered, and described without its word where the vocabulary has the words (an attack's prompt list)."""
        raise NotImplementedError

    def concept_images(self, concept: str, n: int, seed: int = 0) -> tuple[Any, list[str]]:
        """n rendered images (N, H, W, 3) uint8 that show `concept`, with their captions (which name it)."""
        raise NotImplementedError

    def image_metadata(self, images, prompts: Sequence[str], judge=None) -> dict[str, Any]:
        """What the SAE analyses read per image (labels, masks), as tensors; none by default."""
        return {}

    def object_centre(self, image) -> tuple[float, float] | None:
        """Where the image's object is, (x, y) as fractions of its width and height, or None if none stands out."""
        raise NotImplementedError


WORLDS = Registry("world")
register_world = WORLDS.register


def others_in_world(pipe, targets: Sequence[str]) -> list[str]:
    """Every concept of the pipeline's world but those `targets` name (--preserve-others); BadInput for a model of
    no world."""
    world = world_of(pipe)
    if world is None:
        raise BadInput("--preserve-others needs the embedded shapes model (a model of a world, whose concepts are a "
                       "closed list); name the concepts to keep with --preserve CONCEPT ...")
    return world.others(list(targets))


def get_world(name: str) -> World:
    """The world registered as `name` ('shapes'), made; BadInput naming the known ones."""
    return WORLDS.lookup(name)()


def world_of_store(meta: dict) -> World | None:
    """The world of an activation store (its meta.json): recorded by name, or the shapes world for stores of older
    versions that recorded only `shapes_world`."""
    name = meta.get("world") or ("shapes" if meta.get("shapes_world") else None)
    return get_world(name) if name in WORLDS else None


def world_of(pipe) -> World | None:
    """The world the pipeline's model was trained on (from its recorded info), or None for any other model."""
    name = model_info(pipe).get("world")
    return get_world(name) if name in WORLDS else None


from cadiff.worlds.shapes.concepts import ShapesWorld  # noqa: E402,F401  (registers the shapes world)
