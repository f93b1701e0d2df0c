"""Shapes-world accuracy with the shipped evaluator: exact labels, and erase/keep per concept as the paper reports.

For each concept c (a shape, colour or texture), `target` is the accuracy of c's attribute on the rows whose
label is c (an erased concept should drop here) and `others` the accuracy of that attribute on all other rows
(it should stay).

Example:
    >>> from cadiff.evaluation.metrics import ShapesAccuracy
    >>> m = ShapesAccuracy()                                   # doctest: +SKIP
    >>> m.score(images, rows)["shapes_shape"]                  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from cadiff.errors import BadInput
from cadiff.evaluation.metrics.base import ImageSource, Metric
from cadiff.evaluation.prompts import PromptRow
from cadiff.evaluation.stats import wilson
from cadiff.worlds.shapes.world import ATTRIBUTES, attribute_of, caption_labels


def expected_labels(row: PromptRow) -> dict[str, str]:
    """The row's exact labels; else the one its class names when the class is a shapes concept (CSV prompt sets);
    else the attributes its prompt names ('a red circle': shape circle, colour red)."""
    if row.labels:
        return row.labels
    try:
        return {attribute_of(row.cls): row.cls}
    except ValueError:
        return caption_labels(row.prompt)


def erase_keep(table: list[dict[str, Any]], concept: str) -> dict[str, Any]:
    """Accuracy of `concept`'s attribute on rows labelled `concept` (target: the world's accuracy engine, the
    number `cadiff erase` reports) and on all other labelled rows (others)."""
    from cadiff.worlds import get_world

    attribute = attribute_of(concept)
    truth, pred = f"label_{attribute}", f"shapes_{attribute}"
    labelled = [r for r in table if r.get(truth)]
    target = get_world("shapes").accuracy({attribute: [r[pred] for r in labelled]},
                                          [{attribute: r[truth]} for r in labelled], [concept])[concept]
    others = [r[pred] == r[truth] for r in labelled if r[truth] != concept]
    mean = lambda xs: round(float(np.mean(xs)), 4) if xs else None  # noqa: E731
    n_target = sum(r[truth] == concept for r in labelled)
    hits = round((target or 0.0) * n_target)
    return {"attribute": attribute, "target": None if target is None else round(target, 4),
            "target_ci95": list(wilson(hits, n_target)), "n_target": n_target, "others": mean(others),
            "others_ci95": list(wilson(sum(others), len(others))), "n_others": len(others)}


class ShapesAccuracy(Metric):
    """Accuracy of the shipped shapes evaluator (or the one in `evaluator_path`) against each row's exact labels."""

    name = "shapes"
    library = "cadiff"

    def __init__(self, evaluator_path: str | Path | None = None):
        from cadiff.worlds.shapes.evaluator import load_evaluator, shipped_path

        self.path = Path(evaluator_path) if evaluator_path is not None else shipped_path("evaluator")
        self.source = str(evaluator_path) if evaluator_path is not None else "shipped"
        self.evaluator = load_evaluator(self.path)

    def settings(self) -> dict[str, Any]:
        digest = hashlib.sha256((self.path / "model.safetensors").read_bytes()).hexdigest()[:16]
        return {"evaluator": self.source, "evaluator_sha256": digest, "decision": "argmax per attribute"}

    def check_rows(self, rows: Sequence[PromptRow], source: str) -> None:
        if not any(expected_labels(r) for r in rows):
            raise BadInput(f"the shapes metric scores a row against the shape, colour or texture its prompt or "
                           f"class names, and no row of {source} names one; use a shapes prompt set (--prompts "
                           "shapes) or choose other --metrics")

    def score(self, images: np.ndarray, rows: Sequence[PromptRow]) -> dict[str, list]:
        predicted = self.evaluator.predict(images)
        out: dict[str, list] = {f"shapes_{a}": list(v) for a, v in predicted.items()}
        for attribute in ATTRIBUTES:
            out[f"label_{attribute}"] = [expected_labels(r).get(attribute, "") for r in rows]
        return out

    def summarize(self, table: list[dict[str, Any]], images: ImageSource) -> dict[str, Any]:
        accuracy = {}
        for attribute in ATTRIBUTES:
            hits = [r[f"shapes_{attribute}"] == r[f"label_{attribute}"] for r in table if r.get(f"label_{attribute}")]
            accuracy[attribute] = round(float(np.mean(hits)), 4) if hits else None
        concepts = sorted({r[f"label_{a}"] for r in table for a in ATTRIBUTES if r.get(f"label_{a}")},
                          key=lambda c: (list(ATTRIBUTES).index(attribute_of(c)), ATTRIBUTES[attribute_of(c)].index(c)))
        return {"accuracy": accuracy, "per_concept": {c: erase_keep(table, c) for c in concepts}}
