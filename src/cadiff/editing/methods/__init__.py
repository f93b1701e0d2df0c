"""Edit methods, one class per method with a frozen config dataclass, registered by name: CAD (erase and
amplify), the baselines ESD and ConceptPrune-style pruning, and the magnitude control. The config is what a run
records and what the CLI's flags are made from. A new method is one file here plus its `@register_method`.

Example:
    >>> from cadiff.editing.methods import METHODS, method_config
    >>> sorted(METHODS)
    ['cad', 'esd', 'magnitude', 'prune']
    >>> method_config("esd", iterations=50).iterations
    50
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar, Sequence

from cadiff.editing.result import EditResult
from cadiff.errors import BadInput
from cadiff.files.config import Config, make_config
from cadiff.files.registry import Registry


class EditMethod:
    """An edit method: `run` returns an EditResult for concepts on a pipeline, leaving the pipeline unchanged."""

    name: ClassVar[str]
    summary: ClassVar[str]                              # one line for --help
    config_class: ClassVar[type[Config]]
    objectives: ClassVar[tuple[str, ...]] = ("erase",)  # the verbs it serves
    takes_preserve: ClassVar[bool] = True               # whether concepts to keep change what it does
    concepts_at_once: ClassVar[int | None] = None       # how many target concepts one run takes (None: any)
    takes_images: ClassVar[bool] = False                # concept images may stand in for generated ones

    def __init__(self, config: Config):
        self.config = config

    def check(self, concepts: Sequence[str], objective: str, preserve: Sequence[str], images: str | None) -> None:
        """ValueError, before any work, for a run this method cannot do."""
        if images is not None and not self.takes_images:
            raise BadInput(f"method '{self.name}' takes no concept images; drop images (--images)")
        if objective not in self.objectives:
            raise BadInput(f"method '{self.name}' does not {objective}; methods that do: "
                           f"{', '.join(methods_for(objective))}")
        if preserve and not self.takes_preserve:
            raise BadInput(f"method '{self.name}' has no concepts to keep; drop preserve (--preserve)")
        if self.concepts_at_once is not None and len(concepts) > self.concepts_at_once:
            raise BadInput(f"method '{self.name}' edits {self.concepts_at_once} concept per run; give one concept")

    def run(self, pipe, concepts: list[str], *, objective: str, preserve: list[str], progress: bool = True,
            images: str | None = None, seed: int = 0,
            on_round: Callable[[int, Any], None] | None = None) -> EditResult:
        raise NotImplementedError


METHODS = Registry("edit method")
register_method = METHODS.register  # class decorator: API `method=`, CLI `--method`


def methods_for(objective: str) -> list[str]:
    """Names of the registered methods that serve `objective` ('erase' or 'amplify')."""
    return [name for name, cls in METHODS.items() if objective in cls.objectives]


def get_method(name: str) -> type[EditMethod]:
    return METHODS.lookup(name)


def method_config(name: str, **options: Any) -> Config:
    """The config of method `name` with `options` set; ValueError for an option the method does not take."""
    return make_config(get_method(name).config_class, options, f"method '{name}'")


# the built-in methods register themselves, cad first (the default)
from cadiff.editing.methods import cad  # noqa: E402,F401,I001
from cadiff.editing.methods import esd, prune, magnitude  # noqa: E402,F401
