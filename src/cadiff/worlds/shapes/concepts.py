"""The shapes world behind the World interface: 15 concepts (6 shapes, 6 colours, 3 textures), training-style
prompts for concept words, the balanced 36-prompt design, the shipped evaluator as judge, and the per-image labels
and object masks the SAE analyses read."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from cadiff.worlds import World, register_world
from cadiff.worlds.shapes.world import ATTRIBUTES, CONCEPTS, SHAPES, attribute_of, caption_labels
from cadiff.worlds.shapes.world import (COLOURS, SIZE, TEXTURES, full_caption, random_labels, shape_centre,
                                        shape_mask, training_caption)


@register_world
class ShapesWorld(World):
    name = "shapes"

    def attributes(self) -> dict[str, tuple[str, ...]]:
        return dict(ATTRIBUTES)

    def concepts(self) -> tuple[str, ...]:
        return CONCEPTS

    def attribute_of(self, concept: str) -> str:
        return attribute_of(concept)

    def phrasings(self, concept: str) -> list[str]:
        """The bare prompt ('a circle', 'a red shape'), 'an image of' it, every full caption naming it, and each
        full caption with its colour and texture words swapped. The vocabulary has no word that describes a
        concept without naming it, so there is no paraphrase."""
        attribute = attribute_of(concept)
        out = [self.concept_prompt(concept), "an image of " + self.concept_prompt(concept)]
        full = [(s, c, t) for s in SHAPES for c in COLOURS for t in TEXTURES
                if {"shape": s, "colour": c, "texture": t}[attribute] == concept]
        out += [full_caption(s, c, t) for s, c, t in full]
        out += [f"a {t} {c} {s}" for s, c, t in full]
        return list(dict.fromkeys(out))

    def concept_images(self, concept: str, n: int, seed: int = 0) -> tuple[np.ndarray, list[str]]:
        from cadiff.worlds.shapes.world import render

        attribute = attribute_of(concept)
        rng = np.random.default_rng([seed, CONCEPTS.index(concept)])
        labels = {a: [values[i] for i in rng.integers(len(values), size=n)] for a, values in ATTRIBUTES.items()}
        labels[attribute] = [concept] * n
        batch = render(labels["shape"], labels["colour"], labels["texture"], seed=seed)
        return batch.images, batch.captions()

    def object_centre(self, image: np.ndarray) -> tuple[float, float] | None:
        centre = shape_centre(image)
        return None if centre is None else (centre[0] / SIZE, centre[1] / SIZE)

    def concept_prompt(self, concept: str) -> str:
        if concept not in self.concepts():
            return concept
        return f"a {concept}" if concept in SHAPES else f"a {concept} shape"

    def training_prompts(self, n: int, seed: int = 0) -> list[str]:
        rng = np.random.default_rng([seed, 7])
        return [training_caption(int(s), int(c), int(t), rng) for s, c, t in zip(*random_labels(n, seed))]

    def prompts_naming(self, concept: str, n: int, seed: int = 0) -> list[str]:
        """n full captions naming `concept`, the other attributes drawn at random."""
        attribute = attribute_of(concept)
        rng = np.random.default_rng([seed, self.concepts().index(concept)])
        prompts = []
        for _ in range(n):
            words = {a: values[rng.integers(len(values))] for a, values in ATTRIBUTES.items()}
            words[attribute] = concept
            prompts.append(full_caption(words["shape"], words["colour"], words["texture"]))
        return prompts

    def design(self, repeats: int = 1) -> list[tuple[str, dict[str, str]]]:
        """Every (shape, colour) pair per repeat, textures cycled: each shape and colour named 6 times a repeat,
        each texture 12 times, so one image scores a concept of every attribute at once."""
        out = []
        for r in range(repeats):
            for i, shape in enumerate(SHAPES):
                for j, colour in enumerate(COLOURS):
                    texture = TEXTURES[(i + j + r) % len(TEXTURES)]
                    out.append((full_caption(shape, colour, texture),
                                {"shape": shape, "colour": colour, "texture": texture}))
        return out

    def labels_of(self, prompt: str) -> dict[str, str]:
        return caption_labels(prompt)

    def judge(self, path=None):
        from cadiff.worlds.shapes.evaluator import load_evaluator

        return load_evaluator(path)

    def reader(self):
        """The pixel reader: shape, colour and texture read by the world's own rules (`pixels.PixelReader`)."""
        from cadiff.worlds.shapes.pixels import PixelReader

        return PixelReader()

    def image_metadata(self, images: np.ndarray, prompts: Sequence[str], judge=None) -> dict[str, torch.Tensor]:
        """Object mask of each final image, the label indices its prompt names (-1 where open) and, with a judge,
        the ones it reads off the image (`seen_<attribute>`)."""
        out = {"mask": torch.from_numpy(np.stack([shape_mask(im) for im in images]).astype(np.uint8))}
        for attribute, values in ATTRIBUTES.items():
            named = [caption_labels(p).get(attribute) for p in prompts]
            out[attribute] = torch.tensor([values.index(v) if v else -1 for v in named], dtype=torch.int64)
        if judge is not None:
            out.update({f"seen_{a}": torch.from_numpy(p.argmax(1)) for a, p in judge.probabilities(images).items()})
        return out
