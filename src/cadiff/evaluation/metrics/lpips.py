"""LPIPS (torchmetrics, AlexNet by default) between each generated image and the unedited model's image for the
same row: the reference is another results folder made with the same prompts and seeds. The backbone weights
come from the torch hub cache (or a file you give); cadiff never downloads them.

Example:
    >>> from cadiff.evaluation.metrics import LPIPS
    >>> LPIPS("runs/eval-unedited").score(images, rows)["lpips"]     # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from cadiff.evaluation.metrics.base import ImageSource, Metric, require
from cadiff.evaluation.prompts import PromptRow

# torchvision's file names for the ImageNet backbones torchmetrics' LPIPS uses.
BACKBONE_FILES = {"alex": "alexnet-owt-7be5be79.pth", "vgg": "vgg16-397923af.pth",
                  "squeeze": "squeezenet1_1-b8a52dc0.pth"}
MIN_SIZE = 64  # smaller images are upscaled (nearest) to this size before LPIPS


@contextlib.contextmanager
def _hub_with(weights: Path | None, filename: str) -> Iterator[None]:
    """Make torchvision find the backbone without downloading: the hub cache, or a private one holding `weights`."""
    if weights is None:
        cached = Path(torch.hub.get_dir()) / "checkpoints" / filename
        if not cached.is_file():
            raise FileNotFoundError(f"LPIPS backbone weights not found at {cached}; cadiff never downloads. Copy "
                                    f"{filename} there or pass --lpips-weights FILE")
        yield
        return
    if not weights.is_file():
        raise FileNotFoundError(f"LPIPS backbone weights file {weights} not found")
    previous = torch.hub.get_dir()
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "checkpoints").mkdir()
        os.symlink(weights.resolve(), Path(tmp) / "checkpoints" / filename)
        torch.hub.set_dir(tmp)
        try:
            yield
        finally:
            torch.hub.set_dir(previous)


class LPIPS(Metric):
    """Per-row LPIPS distance to the same row's image in the `reference` results folder (lower = closer)."""

    name = "lpips"
    library = "torchmetrics"

    def __init__(self, reference: str | Path, net: str = "alex", weights: str | Path | None = None):
        require("torchmetrics", "metrics")
        require("torchvision", "perceptual")
        from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

        if net not in BACKBONE_FILES:
            raise ValueError(f"unknown LPIPS network '{net}'; use one of {', '.join(BACKBONE_FILES)}")
        reference = Path(reference).expanduser()
        if not (reference / "images").is_dir():
            raise FileNotFoundError(f"LPIPS reference {reference} is not a results folder (no images/); evaluate the "
                                    "unedited model first with the same prompts and give its folder")
        self.reference, self.net = reference, net
        self.weights = Path(weights).expanduser() if weights else None
        with _hub_with(self.weights, BACKBONE_FILES[net]):
            self.metric = LearnedPerceptualImagePatchSimilarity(net_type=net, normalize=True, reduction="none")

    def settings(self) -> dict[str, Any]:
        return {"reference": str(self.reference), "net": self.net, "backbone": str(self.weights or "torch hub cache"),
                "min_size": MIN_SIZE, "upscale": "nearest"}

    @torch.no_grad()
    def score(self, images: np.ndarray, rows: Sequence[PromptRow]) -> dict[str, list]:
        reference = ImageSource(self.reference / "images").load([r.index for r in rows])
        if reference.shape != images.shape:
            raise ValueError(f"LPIPS reference images are {reference.shape[1:3]}, generated ones {images.shape[1:3]}")
        a, b = (torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255 for x in (images, reference))
        if a.shape[-1] < MIN_SIZE:
            a, b = (torch.nn.functional.interpolate(x, size=(MIN_SIZE, MIN_SIZE), mode="nearest") for x in (a, b))
        return {"lpips": [round(float(v), 5) for v in self.metric(a, b).reshape(-1)]}

    def summarize(self, table: list[dict[str, Any]], images: ImageSource) -> dict[str, Any]:
        values = [float(r["lpips"]) for r in table]
        return {"mean": round(float(np.mean(values)), 5) if values else None, "n": len(values)}
