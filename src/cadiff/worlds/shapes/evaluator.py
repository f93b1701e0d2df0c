"""The shipped shapes evaluator: reads shape, colour and texture off any 32x32 shapes image.

Example:
    >>> from cadiff.worlds.shapes import load_evaluator, render
    >>> ev = load_evaluator()
    >>> ev.predict(render(["star"], ["red"], ["solid"]).images)["shape"]
    ['star']
"""

from __future__ import annotations

import json
from dataclasses import asdict
from importlib import resources
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from cadiff.errors import MissingFile
from cadiff.io.files import atomic_dir
from cadiff.worlds.shapes.architecture import EvaluatorConfig, ShapesClassifier
from cadiff.worlds.shapes.world import ATTRIBUTES, SIZE

ASSETS = "assets"


def shipped_path(name: str) -> Path:
    """Path of a shipped asset folder ('pipeline' or 'evaluator') inside the installed package."""
    return Path(str(resources.files("cadiff.worlds.shapes") / ASSETS / name))


def save_evaluator(model: ShapesClassifier, cfg: EvaluatorConfig, path: str | Path) -> None:
    """Write `config.json` + `model.safetensors` into a new folder."""
    with atomic_dir(path) as tmp:
        (tmp / "config.json").write_text(json.dumps(asdict(cfg), indent=2))
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp / "model.safetensors"))


class ShapesEvaluator:
    """Classifies shapes-world images; `predict` gives labels, `probabilities` the softmax per attribute."""

    def __init__(self, model: ShapesClassifier):
        self.model = model.eval()

    @staticmethod
    def _to_tensor(images: np.ndarray | Sequence[Image.Image]) -> torch.Tensor:
        if not isinstance(images, np.ndarray):
            images = np.stack([np.asarray(im.convert("RGB")) for im in images])
        if images.dtype != np.uint8:  # float images in [0, 1], as pipelines return with output_type="np"
            images = (np.clip(images, 0, 1) * 255).round().astype(np.uint8)
        x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
        if x.shape[-1] != SIZE:
            x = torch.nn.functional.interpolate(x, size=(SIZE, SIZE), mode="area")
        return x

    @torch.no_grad()
    def probabilities(self, images: np.ndarray | Sequence[Image.Image]) -> dict[str, np.ndarray]:
        """Softmax probabilities (N, classes) for each attribute."""
        x = self._to_tensor(images)
        outs: dict[str, list[np.ndarray]] = {k: [] for k in ATTRIBUTES}
        for i in range(0, len(x), 512):
            for k, logits in self.model(x[i : i + 512]).items():
                outs[k].append(logits.softmax(-1).numpy())
        return {k: np.concatenate(v) for k, v in outs.items()}

    def predict(self, images: np.ndarray | Sequence[Image.Image]) -> dict[str, list[str]]:
        """The predicted value name of each attribute for every image."""
        probs = self.probabilities(images)
        return {k: [ATTRIBUTES[k][i] for i in p.argmax(1)] for k, p in probs.items()}


def load_evaluator(path: str | Path | None = None) -> ShapesEvaluator:
    """Load an evaluator folder (default: the one shipped with cadiff)."""
    path = Path(path) if path is not None else shipped_path("evaluator")
    if not (path / "model.safetensors").is_file() or not (path / "config.json").is_file():
        raise MissingFile(f"{path} is not a shapes evaluator folder (needs config.json and model.safetensors)")
    raw = json.loads((path / "config.json").read_text())
    cfg = EvaluatorConfig(channels=tuple(raw["channels"]), heads=raw["heads"])
    model = ShapesClassifier(cfg)
    model.load_state_dict(load_file(str(path / "model.safetensors")))
    return ShapesEvaluator(model)
