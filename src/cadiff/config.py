"""Settings as frozen dataclasses: what a run records (run.json) and what the CLI's flags are made from.

A field's `option(default, help, ...)` carries its flag's help text, choices and bounds; `make_config`
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

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar, Sequence

from cadiff.errors import BadInput


def option(default: Any, help: str, *, choices: Sequence[str] | None = None, flag: str | None = None,
           low: float | None = None, high: float | None = None, low_open: bool = False) -> Any:
    """A config field with what its CLI flag needs: help text, `choices`, the bounds of a number (`low`, `high`;
    `low_open`: the low bound excluded), and the flag's name when it is not the field's (`--at-steps` for
    `at_steps` is derived). The flag's type comes from the field's annotation (the CLI maps it)."""
    return field(default=default, metadata={"help": help, "choices": choices, "flag": flag, "low": low,
                                            "high": high, "low_open": low_open})


@dataclass(frozen=True)
class Config:
    """Base of every settings dataclass: frozen, its fields are its settings. `not_options` names settings a user
    might expect that the config leaves to something else, with the reason its error gives."""

    not_options: ClassVar[dict[str, str]] = {}

    def to_dict(self) -> dict[str, Any]:
        """The settings as JSON-ready values (tuples become lists); `from_dict` reads them back."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], what: str | None = None) -> Config:
        """The config `to_dict` wrote (lists read back as the tuples they were); BadInput naming an unknown key."""
        values = {k: tuple(v) if isinstance(v, list) and _tuple_field(cls, k) else v for k, v in data.items()}
        return make_config(cls, values, what or cls.__name__)

    def with_options(self, what: str | None = None, **options: Any) -> Config:
        """A copy with `options` set, checked by the config as a new one is (BadInput for a name it lacks)."""
        if not options:
            return self
        current = {f.name: getattr(self, f.name) for f in fields(self)}
        return make_config(type(self), {**current, **options}, what or type(self).__name__, given=options)

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    def part(self, cls: type[Config], **more: Any) -> Config:
        """The `cls` config made of this one's fields that `cls` has, and `more` (a CADConfig from the calibrated
        erase's settings and a searched point, a TokenConfig from the hardening's)."""
        mine = {name: getattr(self, name) for name in cls.names() if name in type(self).names()}
        return cls(**mine, **more)

    def check_bounds(self) -> None:
        """BadInput naming the first number (or tuple entry) outside the bounds its option declares."""
        for f in fields(self):
            value = getattr(self, f.name)
            for v in value if isinstance(value, tuple) else (value,):
                if isinstance(v, (int, float)) and not within(f.metadata, v):
                    raise BadInput(f"{f.name} must be {bounds_text(f.metadata)}, got {value} "
                                   f"({flag_name(f)})")


def within(meta, value: float) -> bool:
    """Whether `value` is finite and within an option's bounds (`meta`: the field's metadata)."""
    low, high = meta.get("low"), meta.get("high")
    below = low is not None and (value <= low if meta.get("low_open") else value < low)
    return math.isfinite(value) and not below and (high is None or value <= high)


def bounds_text(meta) -> str:
    """An option's bounds in words: 'at least 1', 'in (0, 1]', 'a finite number'."""
    low, high, low_open = meta.get("low"), meta.get("high"), meta.get("low_open")
    if high is None:
        return "a finite number" if low is None else f"{'above' if low_open else 'at least'} {low:g}"
    return f"in {'(' if low_open else '['}{low:g}, {high:g}]"


def _tuple_field(cls: type, name: str) -> bool:
    """Whether field `name` of `cls` holds a tuple (its default is one, or its annotation names one)."""
    f = next((f for f in fields(cls) if f.name == name), None)
    return f is not None and (isinstance(f.default, tuple) or f.type is tuple or str(f.type).startswith("tuple"))


def flag_name(f) -> str:
    """The CLI flag of a config field: '--at-steps' for at_steps, or the field's own `flag`."""
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def make_config(cls: type[Config], options: dict[str, Any], what: str, given: dict[str, Any] | None = None
                ) -> Config:
    """`cls(**options)`, or BadInput naming the options `what` does not take (of `given`, default `options`) and
    the ones it does."""
    known = cls.names()
    unknown = [k for k in (options if given is None else given) if k not in known]
    reasons = [cls.not_options[k] for k in unknown if k in cls.not_options]
    if reasons:
        raise BadInput(f"{', '.join(k for k in unknown if k in cls.not_options)}: {reasons[0]}")
    if unknown:
        raise BadInput(f"{what} takes no option {', '.join(repr(k) for k in unknown)}; its options: "
                       f"{', '.join(known) or 'none'}")
    return cls(**options)

