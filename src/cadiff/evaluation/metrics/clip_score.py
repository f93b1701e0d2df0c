"""CLIP score (ViT-B/32 by default, as the paper): 100 * max(cos(image, prompt), 0), as torchmetrics defines it,
with a transformers CLIP model from a local folder or the local HF cache.

Example:
    >>> from cadiff.evaluation.metrics import ClipScore
    >>> ClipScore("openai/clip-vit-base-patch32").score(images, rows)["clip_score"]   # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from cadiff.evaluation.metrics.base import ImageSource, Metric, hf_folder
from cadiff.evaluation.prompts import PromptRow

DEFAULT_CLIP = "openai/clip-vit-base-patch32"


class ClipScore(Metric):
    """Per-image CLIP score of the image against its own prompt; the summary is the mean."""

    name = "clip"
    library = "transformers"

    def __init__(self, weights: str | Path = DEFAULT_CLIP, batch_size: int = 64):
        from transformers import AutoTokenizer, CLIPImageProcessor, CLIPModel

        self.weights = str(weights)
        folder = hf_folder(weights, "CLIP", "--clip-weights")
        self.model = CLIPModel.from_pretrained(folder, local_files_only=True).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        self.processor = CLIPImageProcessor.from_pretrained(folder, local_files_only=True)
        self.batch_size = batch_size

    def settings(self) -> dict[str, Any]:
        return {"weights": self.weights, "definition": "100 * max(cosine(image, text), 0)",
                "max_text_tokens": self.model.config.text_config.max_position_embeddings}

    @torch.no_grad()
    def score(self, images: np.ndarray, rows: Sequence[PromptRow]) -> dict[str, list]:
        scores: list[float] = []
        limit = self.model.config.text_config.max_position_embeddings
        for i in range(0, len(images), self.batch_size):
            pixels = self.processor(images=list(images[i : i + self.batch_size]), return_tensors="pt")["pixel_values"]
            text = self.tokenizer([r.prompt for r in rows[i : i + self.batch_size]], padding=True, truncation=True,
                                  max_length=limit, return_tensors="pt")
            img = self.model.get_image_features(pixel_values=pixels)
            txt = self.model.get_text_features(input_ids=text["input_ids"], attention_mask=text["attention_mask"])
            img, txt = _tensor(img), _tensor(txt)
            cos = torch.nn.functional.cosine_similarity(img, txt, dim=-1)
            scores.extend((100 * cos.clamp(min=0)).tolist())
        return {"clip_score": [round(s, 4) for s in scores]}

    def summarize(self, table: list[dict[str, Any]], images: ImageSource) -> dict[str, Any]:
        values = [float(r["clip_score"]) for r in table]
        return {"mean": round(float(np.mean(values)), 4) if values else None, "n": len(values)}


def _tensor(output) -> torch.Tensor:
    """transformers may return a tensor or a model output holding the pooled features."""
    if isinstance(output, torch.Tensor):
        return output
    for name in ("image_embeds", "text_embeds", "pooler_output"):
        value = getattr(output, name, None)
        if value is not None:
            return value
    raise TypeError(f"unexpected CLIP output {type(output).__name__}")
