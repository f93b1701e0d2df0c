"""Concept words to prompts, the checks that a set of concepts means something (no blank or repeated concept, no
target that is also a concept to keep or the base prompt), and that every word of a prompt is known to the model's
tokenizer.

Example:
    >>> from cadiff.attribution.concepts import check_known_words, concept_prompt, concept_prompts
    >>> concept_prompt(pipe, "red")            # on the embedded shapes model   # doctest: +SKIP
    'a red shape'
    >>> concept_prompts(pipe, ["circle"], preserve=["a circle"])                 # doctest: +SKIP
    ValueError: 'circle' is both a target and a concept to keep (both become the prompt 'a circle'); ...
    >>> check_known_words(pipe, ["a teal circle"])                               # doctest: +SKIP
    ValueError: unknown word 'teal' in prompt 'a teal circle': ...
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from cadiff.adapters import adapt
from cadiff.errors import BadInput
from cadiff.models.loading import denoiser
from cadiff.models.vocabulary import check_known_words, unknown_words  # noqa: F401  (re-exported)
from cadiff.worlds import world_of


def concept_prompt(pipe, concept: str) -> str:
    """The prompt used for `concept`: on a model of a world (the embedded shapes model) a bare concept word becomes
    the world's training-style caption ('circle' -> 'a circle', 'red' -> 'a red shape'); anything else is used as
    written, with its runs of white space made single spaces."""
    concept = " ".join(concept.split())
    world = world_of(pipe)
    return concept if " " in concept or world is None else world.concept_prompt(concept)


def check_concept_names(targets: Sequence[str], preserve: Sequence[str] = ()) -> None:
    """What can be checked without the model: ValueError for no target, a blank concept, or one written twice."""
    if not targets:
        raise BadInput("give at least one concept")
    for role, names in (("concept", targets), ("concept to keep", preserve)):
        for name in names:
            if not isinstance(name, str) or not name.strip():
                raise BadInput(f"a {role} is empty ({name!r}): name it, e.g. 'circle' or 'a red circle'")
        seen = [" ".join(n.split()) for n in names]
        twice = sorted({n for n in seen if seen.count(n) > 1})
        if twice:
            raise BadInput(f"{role} '{twice[0]}' is given twice; name each {role} once")


def concept_prompts(pipe, targets: Sequence[str], preserve: Sequence[str] = (), base_prompt: str | None = None
                    ) -> tuple[list[str], list[str]]:
    """The prompts `targets` and `preserve` become on `pipe`, checked to mean something before any model work:
    no blank concept, none named twice (in other words too: 'circle' and 'a circle'), no target that is also a
    concept to keep, and (`base_prompt`: the erase objective's reference) no concept equal to the base prompt,
    against which its objective would be zero. ValueError naming the problem otherwise."""
    check_concept_names(targets, preserve)
    prompts = [concept_prompt(pipe, c) for c in targets]
    keep = [concept_prompt(pipe, c) for c in preserve]
    for role, names, made in (("concept", targets, prompts), ("concept to keep", preserve, keep)):
        for i, prompt in enumerate(made):
            if prompt in made[:i]:
                first = names[made.index(prompt)]
                raise BadInput(f"{role}s '{first}' and '{names[i]}' are the same (both become the prompt "
                               f"'{prompt}'); name it once")
    for name, prompt in zip(targets, prompts):
        if prompt in keep:
            other = preserve[keep.index(prompt)]
            same = "" if other == name else f" ('{other}'; both become the prompt '{prompt}')"
            raise BadInput(f"'{name}' is both a target and a concept to keep{same}; remove it from the concepts "
                           "to keep")
    if base_prompt is not None:
        _refuse_base([*targets, *preserve], [*prompts, *keep], base_prompt)
    return prompts, keep


def _refuse_base(names: Sequence[str], prompts: Sequence[str], base_prompt: str) -> None:
    """BadInput for a concept whose prompt is the base prompt (its erase objective would be zero)."""
    base = " ".join(base_prompt.split())
    for name, prompt in zip(names, prompts):
        if prompt == base:
            raise BadInput(f"'{name}' becomes the prompt '{prompt}', which is the base prompt: the erase "
                           "objective compares the two and would be zero; choose another concept or base prompt")


@dataclass(frozen=True)
class Concepts:
    """Targets and concepts to keep with the prompts they become on one model, checked once (`Concepts.on`); the
    layers below take this object and trust it. `base_prompt` is the reference it was checked against, if any."""

    targets: tuple[str, ...]
    keep: tuple[str, ...] = ()
    prompts: tuple[str, ...] = ()
    keep_prompts: tuple[str, ...] = ()
    base_prompt: str | None = None

    @classmethod
    def on(cls, pipe, targets: str | Sequence[str], keep: Sequence[str] | None = (),
           base_prompt: str | None = None) -> Concepts:
        """`targets` and `keep` checked on `pipe` as `concept_prompts` and `check_known_words` check them (and
        against `base_prompt`, the erase objective's reference); BadInput naming the problem."""
        targets = [targets] if isinstance(targets, str) else list(targets)
        keep = list(keep or [])
        prompts, keep_prompts = concept_prompts(pipe, targets, keep, base_prompt=base_prompt)
        check_known_words(pipe, prompts + keep_prompts + ([base_prompt] if base_prompt else []))
        adapt(pipe, denoiser(pipe), prompts[0], base_prompt or "")  # a model no family adapter knows: probed
        return cls(tuple(targets), tuple(keep), tuple(prompts), tuple(keep_prompts), base_prompt)

    def against(self, pipe, base_prompt: str) -> Concepts:
        """These concepts checked against a reference prompt (a config's base prompt), once: no concept becomes it,
        and the model knows its words."""
        if base_prompt == self.base_prompt:
            return self
        _refuse_base(self.all, [*self.prompts, *self.keep_prompts], base_prompt)
        check_known_words(pipe, [base_prompt])
        return Concepts(self.targets, self.keep, self.prompts, self.keep_prompts, base_prompt)

    @property
    def all(self) -> list[str]:
        """Targets, then the concepts to keep."""
        return [*self.targets, *self.keep]

    def prompt(self, concept: str) -> str:
        names, prompts = self.all, [*self.prompts, *self.keep_prompts]
        return prompts[names.index(concept)]

    def pick(self, targets: Sequence[str], keep: Sequence[str] = ()) -> Concepts:
        """Some of these concepts in new roles (a concept to keep scored alone as a target, the targets without
        their keep set): checked already, as parts of a checked set."""
        return Concepts(tuple(targets), tuple(keep), tuple(self.prompt(c) for c in targets),
                        tuple(self.prompt(c) for c in keep), self.base_prompt)
