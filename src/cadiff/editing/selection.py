"""How many weights an edit zeroes, as a config every selecting method shares: the top `ratio` (or `count`) per
output row (the paper's rule), per matrix, or over all selected weights."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from cadiff.errors import BadInput
from cadiff.files.config import Config, option, positive_int
from cadiff.files.select import SCOPES, check_amount

DEFAULT_RATIO = 0.03  # per row: measured on the embedded model; the paper uses 0.001 on SD 1.4's wide rows


def ratio_type(text: str) -> float:
    """argparse type: a fraction in (0, 1]."""
    value = float(text)
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {value}")
    return value


@dataclass(frozen=True)
class ScopeConfig(Config):
    """Where the top weights are counted: per output row (the paper's rule), per matrix, or over all."""

    scope: str = option("row", "row: the paper's per-output-row rule (default); matrix; global", choices=SCOPES)

    def __post_init__(self):
        if self.scope not in SCOPES:
            raise BadInput(f"scope must be one of {', '.join(SCOPES)}, got '{self.scope}'")


@dataclass(frozen=True)
class SelectionConfig(ScopeConfig):
    """The top `ratio` (default 0.03) or `count` of weights per `scope`; a count given beside the default ratio
    replaces it (as `with_options(count=...)` on a default config does)."""

    ratio: float | None = option(None, f"fraction per row/matrix/all to zero (default {DEFAULT_RATIO})",
                                 type=ratio_type)
    count: int | None = option(None, "a number of weights instead of --ratio", type=positive_int)

    def __post_init__(self):
        ScopeConfig.__post_init__(self)
        if self.count is not None and self.ratio == DEFAULT_RATIO:
            object.__setattr__(self, "ratio", None)
        if self.ratio is None and self.count is None:
            object.__setattr__(self, "ratio", DEFAULT_RATIO)
        check_amount(self.ratio, self.count)
