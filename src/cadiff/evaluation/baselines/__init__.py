"""The baselines CAD is judged against, behind one call: ESD (fine-tuning) and ConceptPrune-style pruning.

Example:
    >>> import cadiff
    >>> from cadiff.evaluation.baselines import erase_with
    >>> edited, info = erase_with("prune", cadiff.load_pipeline(), "circle")   # doctest: +SKIP
    >>> edited("a red circle").images[0]                                        # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from cadiff.evaluation.baselines.esd import ESDConfig, esd, esd_parameter_names
from cadiff.evaluation.baselines.prune import PruneConfig, prune

METHODS = ("esd", "esd-u", "esd-x", "prune")


def _config(cls, options: dict[str, Any], method: str):
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(f"unknown option(s) {', '.join(unknown)} for {method}; known: {', '.join(sorted(known))}")
    return cls(**options)


def erase_with(method: str, pipe, concept: str, *, preserve: list[str] | None = None, seed: int = 0,
               **options: Any) -> tuple[Any, dict[str, Any]]:
    """Erase `concept` with a baseline: 'esd' (= 'esd-u', all but cross-attention), 'esd-x' (cross-attention) or
    'prune'; returns (edited pipeline, info). `pipe` itself is left unchanged; options set the method's config."""
    if method in ("esd", "esd-u", "esd-x"):
        variant = "x" if method == "esd-x" else options.pop("variant", "u")
        info_extra = {"preserve": "ignored: ESD has no preserve term"} if preserve else {}
        edited, info = esd(pipe, concept, _config(ESDConfig, {**options, "variant": variant}, method), seed=seed)
        return edited, {**info, **info_extra}
    if method == "prune":
        return prune(pipe, concept, preserve=preserve, config=_config(PruneConfig, options, method), seed=seed)
    raise ValueError(f"unknown baseline '{method}'; choose from {', '.join(METHODS)}")


__all__ = ["ESDConfig", "METHODS", "PruneConfig", "erase_with", "esd", "esd_parameter_names", "prune"]
