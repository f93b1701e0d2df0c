"""Settings as frozen dataclasses: what a run records (run.json) and what the CLI's flags are made from.

A field's `option(default, help, ...)` carries its flag's help text and argparse type/choices; `make_config`
builds a config from keyword options and refuses a name the config does not have, naming the ones it does.

Example:
    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True)
    ... class Demo(Config):
    ...     seeds: int = option(4, "trajectories per concept")
    >>> make_config(Demo, {"seeds": 8}, "demo").to_dict()
    {'seeds': 8}
"""

from __future__ import annotations

import argparse
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any, Callable, Sequence

from cadiff.errors import BadInput


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def option(default: Any, help: str, *, type: Callable[[str], Any] | None = None,
           choices: Sequence[str] | None = None, flag: str | None = None) -> Any:
    """A config field with what its CLI flag needs: help text, an argparse `type`, `choices`, and the flag's name
    when it is not the field's (`--at-steps` for `at_steps` is derived)."""
    return field(default=default, metadata={"help": help, "type": type, "choices": choices, "flag": flag})


@dataclass(frozen=True)
class Config:
    """Base of every settings dataclass: frozen, its fields are its settings."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


def flag_name(f) -> str:
    """The CLI flag of a config field: '--at-steps' for at_steps, or the field's own `flag`."""
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def make_config(cls: type[Config], options: dict[str, Any], what: str) -> Config:
    """`cls(**options)`, or ValueError naming the options `what` does not take and the ones it does."""
    known = cls.names()
    unknown = [k for k in options if k not in known]
    if unknown:
        raise BadInput(f"{what} takes no option {', '.join(repr(k) for k in unknown)}; its options: "
                       f"{', '.join(known) or 'none'}")
    return cls(**options)


def default_of(f) -> Any:
    return None if f.default is MISSING else f.default
