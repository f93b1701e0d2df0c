"""Registries: name -> class for each kind of part that grows (objectives, edit methods, worlds); a new part is one
class with a `name`, registered with `@REGISTRY.register`.

Example:
    >>> PARTS = Registry("part")
    >>> @PARTS.register
    ... class Demo:
    ...     name = "demo"
    >>> PARTS.lookup("demo").__name__, list(PARTS)
    ('Demo', ['demo'])
"""

from __future__ import annotations

from cadiff.errors import BadInput


class Registry(dict):
    """A dict of registered classes by their `name`, in registration order."""

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind

    def register(self, cls: type) -> type:
        """Class decorator: make `cls` available by `cls.name`; a second class of the same name is a bug (one would
        silently replace the other), refused with its traceback."""
        if self.get(cls.name, cls) is not cls:
            raise ValueError(f"a {self.kind} named '{cls.name}' is registered already ({self[cls.name].__qualname__}); "
                             f"give {cls.__qualname__} another name")
        self[cls.name] = cls
        return cls

    def lookup(self, name: str) -> type:
        """The class registered as `name`; ValueError naming the known ones otherwise."""
        if name not in self:
            raise BadInput(f"unknown {self.kind} '{name}'; choose from {', '.join(self)}")
        return self[name]
