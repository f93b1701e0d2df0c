"""Concept discovery: for every SAE latent, its activation maps over the stored images, its label from the true
masks of the shapes world, its purity, and concept cards as a picture sheet.

A latent's map on an image is normalised to [0, 1], upsampled to the image, thresholded at 0.1 and compared with
the object mask of the final image: IoU > 0.5 adds that image's object labels to the latent's entry (the paper's
rule); IoU > 0.5 with the background instead marks a background latent.

Example:
    >>> from cadiff.sae import ActivationStore, TopKSAE
    >>> from cadiff.sae.concepts import latent_codes, concept_dictionary
    >>> codes = latent_codes(ActivationStore("runs/acts"), TopKSAE.load("runs/sae"), step=0)   # doctest: +SKIP
    >>> concept_dictionary(codes)[0]                                                          # doctest: +SKIP
    {'latent': 0, 'kind': 'object', 'labels': {'shape': 'star', ...}, 'purity': {...}, ...}
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from cadiff.errors import BadInput
from cadiff.sae.model import TopKSAE
from cadiff.sae.store import ActivationStore
from cadiff.worlds import world_of_store

THRESHOLD = 0.1
MIN_IOU = 0.5


@dataclass
class LatentCodes:
    """SAE codes of every stored image at one step, with the images' metadata."""

    codes: torch.Tensor          # (N, H, W, d_sae)
    images: np.ndarray           # (N, h, w, 3) uint8, the final generated images
    masks: np.ndarray | None     # (N, h, w) bool, object masks of the final images
    labels: dict[str, np.ndarray]  # attribute -> (N,) value index, -1 unknown
    prompts: list[str]
    step: int
    attributes: dict[str, tuple[str, ...]] = field(default_factory=dict)  # the world's questions and answers

    def subset(self, idx: Sequence[int] | np.ndarray) -> "LatentCodes":
        """The same codes restricted to images `idx`."""
        idx = np.asarray(idx)
        return LatentCodes(self.codes[idx], self.images[idx], None if self.masks is None else self.masks[idx],
                           {k: v[idx] for k, v in self.labels.items()}, [self.prompts[i] for i in idx], self.step,
                           self.attributes)

    def maps(self, latent: int, images: Sequence[int] | np.ndarray) -> np.ndarray:
        """Activation maps of `latent` on `images`, normalised to [0, 1] and upsampled to image size."""
        m = self.codes[list(images), :, :, latent].float()
        m = m / m.flatten(1).amax(1).clamp_min(1e-12)[:, None, None]
        size = self.images.shape[1:3]
        return F.interpolate(m[:, None], size=size, mode="bilinear", align_corners=False)[:, 0].numpy()


def image_labels(meta: dict, attributes: Sequence[str]) -> dict[str, np.ndarray]:
    """Attribute labels per image: what the judge saw in the final image if stored, else what the prompt named."""
    n = len(meta["prompts"])
    return {a: np.asarray(meta.get(f"seen_{a}", meta.get(a, np.full(n, -1)))) for a in attributes}


def store_attributes(store: ActivationStore) -> dict[str, tuple[str, ...]]:
    """The questions and answers of the store's world (empty for a store of a model of no world)."""
    world = world_of_store(store.meta)
    return world.attributes() if world is not None else {}


@torch.no_grad()
def latent_codes(store: ActivationStore, sae: TopKSAE, step: int, branch: str | None = None) -> LatentCodes:
    """Encode the stored activations of the SAE's hookpoint at `step` (default branch: the SAE's)."""
    hookpoint = sae.hookpoint
    if hookpoint is None:
        raise BadInput("this SAE does not record its hookpoint (metadata.hook_name)")
    branch = branch or sae.metadata.get("branch", "cond")
    store.check(hookpoint, branch, [step])
    if store.channels(hookpoint) != sae.d_in:
        raise BadInput(f"the SAE reads {sae.d_in}-dim activations but {hookpoint} has {store.channels(hookpoint)}")
    h, w = store.grid(hookpoint)
    codes = torch.cat([sae.encode(x[:, 0]).reshape(len(x), h, w, -1) for x in store.activations(hookpoint, branch,
                                                                                               [step])])
    meta = store.metadata()
    masks = meta["mask"].astype(bool) if "mask" in meta else None
    attributes = store_attributes(store)
    return LatentCodes(codes, meta["image"], masks, image_labels(meta, attributes), meta["prompts"], step, attributes)


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of boolean masks along the last two axes."""
    inter = (a & b).sum((-2, -1))
    union = (a | b).sum((-2, -1))
    return np.where(union > 0, inter / np.maximum(union, 1), 0.0)


def concept_dictionary(codes: LatentCodes, top_n: int = 16) -> list[dict]:
    """One entry per latent: how often it fires, its top images, kind (object / background / unlabelled),
    labels from IoU-matched images, and purity of each attribute over its top images."""
    strength = codes.codes.flatten(1, 2).amax(1).numpy()  # (N, d_sae): each image's peak activation
    entries = []
    for latent in range(strength.shape[1]):
        order = np.argsort(-strength[:, latent])[:top_n]
        top = order[strength[order, latent] > 0]
        entry = {"latent": latent, "fires": float((strength[:, latent] > 0).mean()), "top_images": top.tolist(),
                 "kind": "unlabelled", "labels": {}, "purity": {}, "object_match": 0.0, "background_match": 0.0}
        if len(top) and codes.masks is not None:
            on = codes.maps(latent, top) >= THRESHOLD
            obj = iou(on, codes.masks[top]) > MIN_IOU
            bg = iou(on, ~codes.masks[top]) > MIN_IOU
            entry["object_match"], entry["background_match"] = float(obj.mean()), float(bg.mean())
            if obj.mean() > 0.5:
                entry["kind"] = "object"
            elif bg.mean() > 0.5:
                entry["kind"] = "background"
            for attribute, values in codes.attributes.items():
                matched = [v for v in codes.labels[attribute][top[obj]] if v >= 0]
                if matched:
                    entry["labels"][attribute] = values[Counter(matched).most_common(1)[0][0]]
        for attribute, values in codes.attributes.items():
            known = [v for v in codes.labels[attribute][top] if v >= 0]
            if known:
                value, count = Counter(known).most_common(1)[0]
                entry["purity"][attribute] = {"value": values[value], "purity": count / len(known)}
        entries.append(entry)
    return entries


def _auroc(scores: np.ndarray, positive: np.ndarray) -> float:
    pos, neg = scores[positive], scores[~positive]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    ranks = np.argsort(np.argsort(np.concatenate([pos, neg]), kind="stable"), kind="stable") + 1.0
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def cohesion_separability(codes: LatentCodes, entries: list[dict]) -> dict[str, dict[str, float | None]]:
    """Per attribute: cohesion = mean purity of the object latents' top images; separability = mean over the
    attribute's values of the best single latent's AUROC (image peak activation, value vs the rest)."""
    strength = codes.codes.flatten(1, 2).amax(1).numpy()
    out = {}
    for attribute, values in codes.attributes.items():
        labels = codes.labels[attribute]
        known = labels >= 0
        purities = [e["purity"][attribute]["purity"] for e in entries
                    if e["kind"] == "object" and attribute in e["purity"]]
        aucs = []
        for v in range(len(values)):
            positive = labels[known] == v
            if positive.any() and (~positive).any():
                aucs.append(max(_auroc(strength[known, c], positive) for c in range(strength.shape[1])))
        out[attribute] = {"cohesion": float(np.mean(purities)) if purities else None,  # None: no latent to judge
                          "separability": float(np.mean(aucs)) if aucs else None,
                          "object_latents": len(purities)}
    return out


def heat_overlay(image: np.ndarray, heat: np.ndarray) -> np.ndarray:
    """The image lit by a [0, 1] activation map: full brightness where the latent fires, dark elsewhere (uint8)."""
    light = 0.2 + 0.8 * heat[..., None]
    return (image.astype(np.float32) * light).round().clip(0, 255).astype(np.uint8)


def concept_cards(codes: LatentCodes, entries: list[dict], latents: Sequence[int], per_row: int = 8):
    """A picture sheet: one row per latent, its top images lit by its activation map (dark = silent), labelled."""
    from cadiff.report.grids import image_grid

    tiles, labels = [], []
    blank = np.full(codes.images.shape[1:], 255, np.uint8)
    for latent in latents:
        e = entries[latent]
        top = e["top_images"][:per_row]
        maps = codes.maps(latent, top) if top else []
        row = [heat_overlay(codes.images[i], m) for i, m in zip(top, maps)]
        tiles += row + [blank] * (per_row - len(row))
        name = " ".join(e["labels"].values()) or e["kind"]
        labels.append(f"#{latent} {name}")
    return image_grid(np.stack(tiles), cols=per_row, row_labels=labels)


def pick_latents(entries: list[dict], n: int = 16) -> list[int]:
    """The n most informative latents for a sheet: object latents first, by match rate, then the most frequent."""
    ranked = sorted(entries, key=lambda e: (e["kind"] != "object", -e["object_match"], -e["fires"]))
    return [e["latent"] for e in ranked if e["top_images"]][:n]


def latents_for(entries: list[dict], value: str, n: int = 1) -> list[int]:
    """The n latents that stand most for a concept word ('red', 'star', 'striped'): highest purity of that value
    over their top images, IoU-matched object latents first; ValueError if no latent fires for it."""
    attribute = next((a for e in entries for a, p in e["purity"].items() if p["value"] == value), None)
    candidates = [e for e in entries if e["purity"].get(attribute, {}).get("value") == value]
    if not candidates:
        raise BadInput(f"no latent of this SAE stands for '{value}'; try another step or a wider SAE")
    ranked = sorted(candidates, key=lambda e: (-e["purity"][attribute]["purity"],
                                               e["labels"].get(attribute) != value, -e["fires"]))
    return [e["latent"] for e in ranked[:n]]
