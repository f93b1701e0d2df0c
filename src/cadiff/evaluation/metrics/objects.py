"""Object accuracy with an ImageNet ResNet-50 (transformers, `microsoft/resnet-50` by default) from a local folder
or the local HF cache: top-1 is correct when one of the predicted label's names equals the row's class.

Example:
    >>> from cadiff.evaluation.metrics import ObjectAccuracy
    >>> ObjectAccuracy().score(images, rows)["object_pred"]     # doctest: +SKIP
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from cadiff.evaluation.metrics.base import ImageSource, Metric, hf_folder
from cadiff.evaluation.prompts import PromptRow

DEFAULT_RESNET = "microsoft/resnet-50"


def names_of(label: str) -> set[str]:
    """The lower-case synonyms of an ImageNet label ('tench, Tinca tinca' -> {'tench', 'tinca tinca'})."""
    return {part.strip().lower() for part in label.split(",") if part.strip()}


class ObjectAccuracy(Metric):
    """Top-1 ImageNet prediction per image; accuracy per class (rows whose class matches one of the label names)."""

    name = "object"
    library = "transformers"

    def __init__(self, weights: str | Path = DEFAULT_RESNET, batch_size: int = 64):
        from transformers import AutoImageProcessor, AutoModelForImageClassification

        self.weights = str(weights)
        folder = hf_folder(weights, "ResNet-50", "--resnet-weights")
        self.model = AutoModelForImageClassification.from_pretrained(folder, local_files_only=True).eval()
        self.processor = AutoImageProcessor.from_pretrained(folder, local_files_only=True, use_fast=False)
        self.batch_size = batch_size

    def settings(self) -> dict[str, Any]:
        return {"weights": self.weights, "decision": "top-1", "match": "class equals one of the label's names"}

    @torch.no_grad()
    def score(self, images: np.ndarray, rows: Sequence[PromptRow]) -> dict[str, list]:
        labels: list[str] = []
        for i in range(0, len(images), self.batch_size):
            pixels = self.processor(images=list(images[i : i + self.batch_size]), return_tensors="pt")["pixel_values"]
            top = self.model(pixel_values=pixels).logits.argmax(-1).tolist()
            labels.extend(self.model.config.id2label[k] for k in top)
        correct = [bool(r.cls) and r.cls.strip().lower() in names_of(lab) for r, lab in zip(rows, labels)]
        return {"object_pred": labels, "object_correct": correct}

    def summarize(self, table: list[dict[str, Any]], images: ImageSource) -> dict[str, Any]:
        per_class: dict[str, list[bool]] = defaultdict(list)
        for r in table:
            if r.get("class"):
                per_class[r["class"]].append(bool(r["object_correct"]))
        accuracy = {c: round(float(np.mean(v)), 4) for c, v in per_class.items()}
        classes = list(accuracy)
        erase_keep = {c: {"target": accuracy[c],
                          "others": round(float(np.mean([x for o in classes if o != c for x in per_class[o]])), 4)
                          if len(classes) > 1 else None} for c in classes}
        return {"accuracy": accuracy, "per_class": erase_keep}
