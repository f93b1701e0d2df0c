"""FID with torchmetrics between the generated images and a folder of reference images (real images, or the
renderer's images in the shapes world). The standard network is torch-fidelity's FID Inception-v3
(`pt_inception-2015-12-05-6726825d.pth`), read from a local file or the torch hub cache; never downloaded.

Example:
    >>> from cadiff.evaluation.metrics import FID
    >>> FID("data/coco_real/").summarize(table, images)["fid"]     # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from cadiff.errors import BadInput, MissingFile
from cadiff.evaluation.metrics.base import ImageSource, Metric, require

INCEPTION_FILE = "pt_inception-2015-12-05-6726825d.pth"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


def inception_weights(path: str | Path | None) -> Path:
    """The FID Inception weights file: `path`, or the torch hub cache copy; FileNotFoundError naming it if absent."""
    candidate = Path(path).expanduser() if path else Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE
    if not candidate.is_file():
        raise MissingFile(
            f"FID Inception weights not found at {candidate}; cadiff never downloads. Copy {INCEPTION_FILE} (from "
            "the torch-fidelity release) there or pass --fid-weights FILE")
    return candidate


def reference_images(folder: str | Path, limit: int | None = None) -> np.ndarray:
    """All images (sorted by name) of a folder, or of its images/ subfolder (a results folder), as uint8 RGB."""
    from PIL import Image

    folder = Path(folder).expanduser()
    if (folder / "images").is_dir():
        folder = folder / "images"
    if not folder.is_dir():
        raise MissingFile(f"FID reference folder {folder} not found; give a folder of real images")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[:limit]
    if len(files) < 2:
        raise BadInput(f"FID reference folder {folder} holds {len(files)} images; FID needs at least 2 (thousands "
                       "for a stable estimate)")
    return np.stack([np.asarray(Image.open(p).convert("RGB")) for p in files])


class FID(Metric):
    """Fréchet distance between Inception features of the generated images and of `reference` images."""

    name = "fid"
    library = "torchmetrics"

    def __init__(self, reference: str | Path, weights: str | Path | None = None,
                 feature_extractor: torch.nn.Module | None = None, batch_size: int = 64):
        require("torchmetrics", "metrics")
        self.reference = Path(reference)
        self.batch_size = batch_size
        self.feature_extractor = feature_extractor
        self.weights = None if feature_extractor is not None else inception_weights(weights)

    def settings(self) -> dict[str, Any]:
        network = (f"custom {type(self.feature_extractor).__name__}" if self.feature_extractor is not None
                   else f"torch-fidelity InceptionV3 pool3 (2048), {self.weights}")
        return {"reference": str(self.reference), "features": network, "input": "uint8, resized by the network"}

    def _metric(self, image_shape: tuple[int, ...]):
        from torchmetrics.image.fid import FrechetInceptionDistance

        if self.feature_extractor is not None:
            return FrechetInceptionDistance(feature=self.feature_extractor, input_img_size=image_shape)
        require("torch_fidelity", "perceptual")
        return FrechetInceptionDistance(feature=2048, feature_extractor_weights_path=str(self.weights))

    def summarize(self, table: list[dict[str, Any]], images: ImageSource) -> dict[str, Any]:
        generated = images.load([int(r["index"]) for r in table])
        real = reference_images(self.reference)
        metric = self._metric((3, *generated.shape[1:3]))
        for batch, is_real in ((real, True), (generated, False)):
            for i in range(0, len(batch), self.batch_size):
                metric.update(torch.from_numpy(batch[i : i + self.batch_size]).permute(0, 3, 1, 2), real=is_real)
        return {"fid": round(float(metric.compute()), 4), "n_generated": len(generated), "n_reference": len(real)}
