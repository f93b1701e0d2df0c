"""Edit methods, one class per method with a frozen config dataclass, registered by name: CAD (erase and
amplify), the baselines ESD and ConceptPrune-style pruning, and the magnitude control here; the calibrated erase
(cadiff.calibration) and the hardening (cadiff.attacks) register from their packages. A method is its config: the
config's class picks the method (`method_for`), and the config is what a run records and what the CLI's flags are
made from. A new method is one file plus its `@register_method`.

Example:
    >>> from cadiff.editing.methods import METHODS, method_config
    >>> sorted(METHODS)                     # with cadiff imported: also 'calibrated' and 'harden'
    ['cad', 'calibrated', 'esd', 'harden', 'magnitude', 'prune']
    >>> method_config("esd", iterations=50).iterations
    50
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Sequence

from cadiff.attribution.attribute import check_request
from cadiff.attribution.concepts import Concepts, check_concept_names
from cadiff.attribution.config import AttributionConfig
from cadiff.attribution.objectives import get_objective
from cadiff.editing.result import EditResult
from cadiff.errors import BadInput
from cadiff.config import Config, make_config
from cadiff.attribution.mask import Mask
from cadiff.registry import Registry


@dataclass(frozen=True)
class EditInputs:
    """An edit's inputs as given, checked without the model (`EditMethod.inputs`): the names, the objective, the
    images, the judges' specifications, the edit to start from; `keep_world`: the concepts to keep are a world's
    others (resolved on the model)."""

    targets: tuple[str, ...]
    keep: tuple[str, ...]
    objective: str
    images: str | None
    judge: Any
    second_judge: Any
    start: Mask | None
    keep_world: bool


@dataclass(frozen=True)
class EditRequest:
    """What an edit is asked to do, checked once at the edge (`EditMethod.request`): the concepts with their
    prompts, the objective, amplify's concept images, the judges (methods that judge their own edits), the edit to
    start from (hardening grows an erase), and where to report progress (`on_step`: CAD's (round, mask) after each
    round, the calibrated erase's Point after each screened setting)."""

    concepts: Concepts
    objective: str = "erase"
    images: str | None = None
    judges: tuple = ()
    start: Mask | None = None
    progress: bool = True
    on_step: Callable[..., None] | None = None

    def step(self, *event: Any) -> None:
        if self.on_step is not None:
            self.on_step(*event)


class EditMethod:
    """An edit method: `run` returns an EditResult for a checked request on a pipeline, leaving the pipeline
    unchanged. Its config class picks it (`method_for`)."""

    name: ClassVar[str]
    summary: ClassVar[str]                              # one line for --help
    config_class: ClassVar[type[Config]]
    objectives: ClassVar[tuple[str, ...]] = ("erase",)  # the verbs it serves
    default_for: ClassVar[tuple[str, ...]] = ()         # the verbs whose default method it is
    takes_preserve: ClassVar[bool] = True               # whether concepts to keep change what it does
    keeps_world: ClassVar[bool] = False                 # with no concepts to keep given, keep all a world's others
    concepts_at_once: ClassVar[int | None] = None       # how many target concepts one run takes (None: any)
    takes_images: ClassVar[bool] = False                # concept images may stand in for generated ones
    judged: ClassVar[bool] = False                      # it judges its own edits (takes judge=, second_judge=)
    starts_from: ClassVar[bool] = False                 # it grows a given edit (takes start=, a mask)

    def __init__(self, config: Config):
        self.config = config

    def inputs(self, concepts: str | Sequence[str], objective: str = "erase", *,
               preserve: Sequence[str] | None = None, images: str | None = None, judge: Any = None,
               second_judge: Any = None, start: Mask | None = None, keep_world: bool = False) -> EditInputs:
        """What can be checked before the model is loaded: BadInput for a request this method cannot take."""
        targets = [concepts] if isinstance(concepts, str) else list(concepts)
        keep = list(preserve or [])
        check_concept_names(targets, keep)
        if objective not in self.objectives:
            raise BadInput(f"method '{self.name}' does not {objective}; methods that do: "
                           f"{', '.join(methods_for(objective))}")
        if images is not None and not self.takes_images:
            raise BadInput(f"method '{self.name}' takes no concept images; drop images (--images)")
        if (keep or keep_world) and not self.takes_preserve:
            given = "--preserve-others" if keep_world else "preserve (--preserve)"
            raise BadInput(f"method '{self.name}' has no concepts to keep; drop {given}")
        if self.concepts_at_once is not None and len(targets) > self.concepts_at_once:
            raise BadInput(f"method '{self.name}' edits {self.concepts_at_once} concept per run; give one concept")
        if (judge is not None or second_judge is not None) and not self.judged:
            raise BadInput(f"method '{self.name}' does not judge its edit; drop judge= and second_judge= "
                           "(--judge, --second-judge)")
        if (start is not None) != self.starts_from:
            raise BadInput(f"method '{self.name}' grows a given erase: give start= (the erase's mask)"
                           if self.starts_from else f"method '{self.name}' takes no edit to start from; drop start=")
        keep_world = keep_world or (not keep and self.keeps_world)
        if isinstance(self.config, AttributionConfig):  # a method that scores: its attribution request, once
            check_request(objective, self.config, images, len(targets), bool(keep) or keep_world)
        return EditInputs(tuple(targets), tuple(keep), objective, images, judge, second_judge, start, keep_world)

    def request(self, pipe, inputs: EditInputs, *, progress: bool = True,
                on_step: Callable[..., None] | None = None) -> EditRequest:
        """The checked request on `pipe`: the concepts' prompts, the judges, every input normalised into the
        objects `run` trusts, before any heavy work."""
        from cadiff.worlds import others_in_world, world_of

        keep = list(inputs.keep)
        if inputs.keep_world:
            if self.keeps_world and world_of(pipe) is None:
                raise BadInput(f"method '{self.name}' needs concepts to keep on this model: give preserve=[...] "
                               "(--preserve CONCEPT ... or --preserve-file FILE)")
            keep = others_in_world(pipe, inputs.targets)
        uses_base = hasattr(self.config, "base_prompt") and get_objective(inputs.objective).uses_base_prompt
        checked = Concepts.on(pipe, inputs.targets, keep, base_prompt=self.config.base_prompt if uses_base else None)
        return EditRequest(checked, inputs.objective, inputs.images,
                           self.judges(pipe, checked, inputs.judge, inputs.second_judge), inputs.start, progress,
                           on_step)

    def judges(self, pipe, concepts: Concepts, judge: Any, second_judge: Any) -> tuple:
        """The judges of a judged method, resolved and checked on `concepts` (judged methods define it)."""
        return ()

    def run(self, pipe, request: EditRequest) -> EditResult:
        raise NotImplementedError


METHODS = Registry("edit method")
register_method = METHODS.register  # class decorator; the method's config class selects it


def methods_for(objective: str) -> list[str]:
    """Names of the registered methods that serve `objective` ('erase' or 'amplify')."""
    return [name for name, cls in METHODS.items() if objective in cls.objectives]


def get_method(name: str) -> type[EditMethod]:
    """The method class registered as `name` ('cad', 'calibrated', 'esd', ...); BadInput naming the known ones."""
    return METHODS.lookup(name)


def method_for(config: Config) -> EditMethod:
    """The registered method whose config `config` is, made with it; BadInput for a config of no method."""
    for cls in METHODS.values():
        if type(config) is cls.config_class:
            return cls(config)
    raise BadInput(f"{type(config).__name__} is not the config of an edit method; give one of "
                   f"{', '.join(cls.config_class.__name__ for cls in METHODS.values())}")


def default_method(objective: str) -> type[EditMethod]:
    """The method an `objective` runs when no config is given (erase: the calibrated erase; amplify: CAD)."""
    chosen = [cls for cls in METHODS.values() if objective in cls.default_for]
    if not chosen:
        raise BadInput(f"no edit method is the default for '{objective}'; give a config")
    return chosen[0]


def method_config(name: str, **options: Any) -> Config:
    """The config of method `name` with `options` set; BadInput for an option the method does not take."""
    return make_config(get_method(name).config_class, options, f"method '{name}'")


# the built-in methods register themselves, cad first (the default)
from cadiff.editing.methods import cad  # noqa: E402,F401,I001
from cadiff.editing.methods import esd, prune, magnitude, cadtrain  # noqa: E402,F401
