"""Early composition: how much of the final image is already decided at a given step.

- object map: label latents on training images (concept_dictionary); on held-out images a position is predicted
  "object" when its top latent is an object latent (and, second rule, when it is not a background latent); IoU with the final image's object mask, next to a fixed-blob
  baseline (the mean training mask) and the ceiling the feature grid allows (the true mask at grid resolution).
- probes: ridge-regression linear probes from the activations at a step to the final image's shape, colour,
  texture and position (quadrant of the object's centre), accuracy on held-out images next to chance.

Example:
    >>> from cadiff.sae.composition import object_map_iou, probe_scores
    >>> object_map_iou(codes)["iou"]                            # doctest: +SKIP
    >>> probe_scores(store, "mid_block.attentions.0", step=0)   # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from cadiff.errors import BadInput
from cadiff.sae.concepts import LatentCodes, concept_dictionary, image_labels, iou, store_attributes
from cadiff.sae.store import ActivationStore


def split(n: int, test_fraction: float = 0.3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A fixed random (train, test) split of n items."""
    order = np.random.default_rng(seed).permutation(n)
    cut = int(round(n * (1 - test_fraction)))
    return np.sort(order[:cut]), np.sort(order[cut:])


def _upsample(grid_maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    t = torch.from_numpy(grid_maps.astype(np.float32))[:, None]
    return F.interpolate(t, size=size, mode="nearest")[:, 0].numpy() > 0.5


def object_map_iou(codes: LatentCodes, test_fraction: float = 0.3, seed: int = 0) -> dict[str, float]:
    """Mean IoU between the predicted object map (top latent per position is an object latent) and the final mask."""
    if codes.masks is None:
        raise BadInput("these activations carry no object masks (not the shapes world); cannot score composition")
    train, test = split(len(codes.images), test_fraction, seed)
    entries = concept_dictionary(codes.subset(train))
    objects = torch.tensor([e["kind"] == "object" for e in entries])
    background = torch.tensor([e["kind"] == "background" for e in entries])
    z = codes.codes[test]
    top = z.argmax(-1)
    predicted = (objects[top] & (z.amax(-1) > 0)).numpy()  # (n, H, W) on the feature grid
    not_background = (~background[top] & (z.amax(-1) > 0)).numpy()
    size = codes.images.shape[1:3]
    masks = codes.masks[test]
    grid = tuple(z.shape[1:3])
    coarse = F.adaptive_avg_pool2d(torch.from_numpy(masks.astype(np.float32))[:, None], grid)[:, 0].numpy()
    prior = codes.masks[train].mean(0) > 0.5
    return {"iou": float(iou(_upsample(predicted, size), masks).mean()),
            "iou_not_background": float(iou(_upsample(not_background, size), masks).mean()),
            "baseline_mean_mask": float(iou(np.broadcast_to(prior, masks.shape), masks).mean()),
            "ceiling_grid": float(iou(_upsample(coarse, size), masks).mean()),
            "object_latents": int(objects.sum()), "background_latents": int(background.sum()),
            "test_images": len(test)}


def ridge_probe(x: np.ndarray, y: np.ndarray, test_fraction: float = 0.3, seed: int = 0) -> dict[str, float]:
    """Held-out accuracy of a ridge-regression classifier x -> y (ridge picked on a validation split), and chance."""
    keep = y >= 0
    x, y = x[keep].astype(np.float64), y[keep]
    train, test = split(len(y), test_fraction, seed)
    mean, std = x[train].mean(0), x[train].std(0) + 1e-6
    x = (x - mean) / std
    classes = np.unique(y[train])
    onehot = (y[:, None] == classes[None]).astype(np.float64)

    def fit(idx, lam):
        k = x[idx] @ x[idx].T + lam * np.eye(len(idx))
        return x[idx].T @ np.linalg.solve(k, onehot[idx] - onehot[idx].mean(0)), onehot[idx].mean(0)

    fit_idx, val_idx = train[: int(len(train) * 0.75)], train[int(len(train) * 0.75):]
    best = max((np.mean(classes[(x[val_idx] @ w + b).argmax(1)] == y[val_idx]), lam)
               for lam in (1e-1, 1e0, 1e1, 1e2, 1e3, 1e4) for w, b in [fit(fit_idx, lam * x.shape[1] / 100)])[1]
    w, b = fit(train, best * x.shape[1] / 100)
    accuracy = float(np.mean(classes[(x[test] @ w + b).argmax(1)] == y[test]))
    chance = float(np.max(np.bincount(y[test])) / len(test)) if len(test) else float("nan")
    return {"accuracy": accuracy, "chance": chance, "n_test": int(len(test))}


def quadrant_labels(masks: np.ndarray) -> np.ndarray:
    """Quadrant (0 TL, 1 TR, 2 BL, 3 BR) of each mask's centre; -1 for empty masks."""
    out = np.full(len(masks), -1)
    h, w = masks.shape[1:]
    for i, m in enumerate(masks):
        ys, xs = np.nonzero(m)
        if len(xs) >= 4:
            out[i] = int(ys.mean() + 0.5 >= h / 2) * 2 + int(xs.mean() + 0.5 >= w / 2)
    return out


def probe_scores(store: ActivationStore, hookpoint: str, step: int, branch: str = "cond",
                 only_open: bool = False) -> dict[str, dict[str, float]]:
    """Linear-probe accuracy from the activations at `step` to the final image's attributes and position.

    With `only_open`, each attribute is probed only on images whose prompt left it open (decided by the noise)."""
    x = torch.cat([a[:, 0].flatten(1) for a in store.activations(hookpoint, branch, [step])]).numpy()
    meta = store.metadata()
    attributes = store_attributes(store)
    labels = image_labels(meta, attributes)
    out = {}
    for attribute in attributes:
        y = labels[attribute].copy()
        if only_open:
            y[np.asarray(meta.get(attribute, np.full(len(y), -1))) >= 0] = -1
        if (y >= 0).sum() >= 20:
            out[attribute] = ridge_probe(x, y)
    if "mask" in meta:
        out["position"] = ridge_probe(x, quadrant_labels(meta["mask"].astype(bool)))
    return out
