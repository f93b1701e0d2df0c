"""How many weights an edit zeroes, as a config every selecting method shares: the top `ratio` (or `count`) per
output row (the paper's rule), per matrix, or over all selected weights."""

from __future__ import annotations

from dataclasses import dataclass

from cadiff.errors import BadInput
from cadiff.config import Config, option
from cadiff.attribution.selection import SCOPES, check_amount

DEFAULT_RATIO = 0.03  # per row: measured on the embedded model; the paper uses 0.001 on SD 1.4's wide rows


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
                                 low=0, high=1, low_open=True)
    count: int | None = option(None, "a number of weights instead of --ratio", low=1)

    def __post_init__(self):
        ScopeConfig.__post_init__(self)
        if self.count is not None and self.ratio == DEFAULT_RATIO:
            object.__setattr__(self, "ratio", None)
        if self.ratio is None and self.count is None:
            object.__setattr__(self, "ratio", DEFAULT_RATIO)
        check_amount(self.ratio, self.count)
