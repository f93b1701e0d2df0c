"""CLIP zero-shot judge: an image shows a concept when CLIP puts "a photo of <concept>" above "a photo of <other>"
for every concept it is told apart from (the concepts to keep), with weights from a local folder or the local HF
cache (never downloaded)."""

from __future__ import annotations

from pathlib import Path

import torch

from cadiff.errors import BadInput
from cadiff.evaluation.judges import Judge, register_judge
from cadiff.evaluation.metrics.base import hf_folder
from cadiff.evaluation.metrics.clip_score import DEFAULT_CLIP, _tensor

TEMPLATE = "a photo of {}"


@register_judge
class ClipJudge(Judge):
    name = "clip"

    def __init__(self, weights: str | Path = DEFAULT_CLIP, template: str = TEMPLATE):
        from transformers import AutoTokenizer, CLIPImageProcessor, CLIPModel

        self.weights, self.template = str(weights), template
        folder = hf_folder(weights, "CLIP", "--clip-weights")
        self.model = CLIPModel.from_pretrained(folder, local_files_only=True).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        self.processor = CLIPImageProcessor.from_pretrained(folder, local_files_only=True)

    @torch.no_grad()
    def present(self, images, concept, others=()):
        if not others:
            raise BadInput("the CLIP judge tells a concept apart from others: give the concepts to keep (others=)")
        texts = [self.template.format(c) for c in (concept, *others)]
        tokens = self.tokenizer(texts, padding=True, truncation=True, return_tensors="pt",
                                max_length=self.model.config.text_config.max_position_embeddings)
        txt = torch.nn.functional.normalize(_tensor(self.model.get_text_features(**tokens)), dim=-1)
        pixels = self.processor(images=list(images), return_tensors="pt")["pixel_values"]
        img = torch.nn.functional.normalize(_tensor(self.model.get_image_features(pixel_values=pixels)), dim=-1)
        return (img @ txt.T).argmax(-1).numpy() == 0

    def info(self):
        return {"judge": self.name, "weights": self.weights, "template": self.template,
                "rule": "the concept's text is the most similar of the concept and the ones it is told apart from"}
