"""Concepts and early composition on a planted world: latent 0 fires on the object, latent 1 on the background,
latent 2+s only on objects of shape s."""

from __future__ import annotations

import numpy as np
import torch

from cadiff.sae import ActivationStore, TopKSAE
from cadiff.sae.composition import object_map_iou, probe_scores, quadrant_labels
from cadiff.sae.concepts import concept_cards, concept_dictionary, cohesion_separability, latent_codes, pick_latents
from cadiff.worlds.shapes import render_random

HOOK = "mid_block.attentions.0"
N, GRID, C = 96, 8, 8


def planted_store(tmp_path, store_from):
    batch = render_random(N, seed=3)
    grid_mask = torch.nn.functional.adaptive_avg_pool2d(torch.from_numpy(batch.masks).float()[:, None], GRID)[:, 0]
    on = (grid_mask > 0.5).float().flatten(1)  # (N, P) object positions on the feature grid
    acts = torch.zeros(N, 1, GRID * GRID, C)
    acts[:, 0, :, 0] = on * 2.0
    acts[:, 0, :, 1] = (1 - on) * 1.0
    for i, s in enumerate(batch.shapes):
        acts[i, 0, :, 2 + s] = on[i] * 3.0
    extra = {"image": torch.from_numpy(batch.images), "mask": torch.from_numpy(batch.masks.astype(np.uint8)),
             "shape": torch.from_numpy(batch.shapes), "colour": torch.from_numpy(batch.colours),
             "texture": torch.from_numpy(batch.textures)}
    store = ActivationStore(store_from(tmp_path / "acts", acts, HOOK, 32, (GRID, GRID), extra))
    sae = TopKSAE(C, C, k=C, metadata={"hook_name": HOOK, "branch": "cond", "grid": [GRID, GRID]})
    with torch.no_grad():
        sae.W_enc.copy_(torch.eye(C))
        sae.W_dec.copy_(torch.eye(C))
    return store, sae, batch


def test_latents_are_labelled_from_true_masks(tmp_path, store_from):
    store, sae, batch = planted_store(tmp_path, store_from)
    codes = latent_codes(store, sae, step=0)
    entries = concept_dictionary(codes)
    assert entries[0]["kind"] == "object" and entries[1]["kind"] == "background"
    for s in range(6):
        e = entries[2 + s]
        if e["top_images"]:
            assert e["kind"] == "object" and e["labels"]["shape"] == ["circle", "square", "triangle", "star", "cross",
                                                                      "heart"][s]
            assert e["purity"]["shape"]["purity"] == 1.0
    scores = cohesion_separability(codes, entries)
    assert scores["shape"]["separability"] == 1.0 and scores["shape"]["cohesion"] > 0.9
    assert scores["colour"]["separability"] < 0.9  # no latent was planted for colour
    sheet = concept_cards(codes, entries, pick_latents(entries, 4))
    assert sheet.height > 4 * 64


def test_object_map_and_probes_read_the_planted_layout(tmp_path, store_from):
    store, sae, batch = planted_store(tmp_path, store_from)
    codes = latent_codes(store, sae, step=0)
    result = object_map_iou(codes)
    assert result["iou"] > result["baseline_mean_mask"] and abs(result["iou"] - result["ceiling_grid"]) < 0.05
    probes = probe_scores(store, HOOK, step=0)
    assert probes["shape"]["accuracy"] > 0.9
    assert probes["position"]["accuracy"] > probes["position"]["chance"] + 0.3
    assert probes["colour"]["accuracy"] < 0.6  # colour was never planted in the activations
    assert (quadrant_labels(batch.masks) >= 0).all()
