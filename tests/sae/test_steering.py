"""Steering: strength zero is an exact no-op; a planted concept vector moves the activations as specified."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cadiff import generate
from cadiff.sae import ActivationCapture, TopKSAE, quadrant_region, steer

HOOK = "mid_block.attentions.0"


def identity_sae(channels: int, grid: tuple[int, int]) -> TopKSAE:
    """d_sae = d_in, W_enc = W_dec = I, no biases, k = d_in: z = ReLU(delta), concept c = channel c."""
    sae = TopKSAE(channels, channels, k=channels, metadata={"hook_name": HOOK, "grid": list(grid)})
    with torch.no_grad():
        sae.W_enc.copy_(torch.eye(channels))
        sae.W_dec.copy_(torch.eye(channels))
    return sae


def grid_of(pipe) -> tuple[int, tuple[int, int]]:
    with ActivationCapture(pipe, [HOOK], at_steps=[0]) as cap:
        generate(pipe, ["a red circle"], [0], steps=2, guidance=4.0)
    return cap.take()[(HOOK, "cond")].shape[-1], cap.grids[HOOK]


def test_quadrants():
    r = quadrant_region((4, 4), "top-right")
    assert r.sum() == 4 and r[:2, 2:].all()
    with pytest.raises(ValueError, match="unknown quadrant"):
        quadrant_region((4, 4), "north")


def test_global_steering_at_zero_strength_changes_nothing(sd1):
    channels, grid = grid_of(sd1)
    sae = identity_sae(channels, grid)
    kwargs = dict(steps=3, guidance=4.0)
    before = generate(sd1, ["a red circle", "a blue star"], [0, 1], **kwargs)
    with steer(sd1, sae, latents=[0, 1], mode="global", beta=0.0, at_steps="all", steps=3):
        same = generate(sd1, ["a red circle", "a blue star"], [0, 1], **kwargs)
    with steer(sd1, sae, latents=[0, 1], mode="global", beta=50.0, at_steps="all", steps=3):
        moved = generate(sd1, ["a red circle", "a blue star"], [0, 1], **kwargs)
    assert np.array_equal(before, same)
    assert not np.array_equal(before, moved)


def test_planted_concept_vector_moves_activations_as_specified(sd1):
    channels, grid = grid_of(sd1)
    sae = identity_sae(channels, grid)
    latent, beta = 1, 3.0
    region = quadrant_region(grid, "bottom-left")
    kwargs = dict(steps=3, guidance=4.0)
    with ActivationCapture(sd1, [HOOK], at_steps=[0, 1]) as cap:
        generate(sd1, ["a red circle"], [0], **kwargs)
    plain = cap.take()
    with steer(sd1, sae, latents=[latent], mode="spatial", beta=beta, at_steps=[1], quadrant="bottom-left",
               steps=3):
        with ActivationCapture(sd1, [HOOK], at_steps=[0, 1]) as cap:  # registered after the steering hook: sees its edit
            generate(sd1, ["a red circle"], [0], **kwargs)
    steered = cap.take()
    # step 0 is outside the window: untouched; the unconditional branch is never touched
    assert torch.equal(steered[(HOOK, "cond")][:, 0], plain[(HOOK, "cond")][:, 0])
    assert torch.equal(steered[(HOOK, "uncond")][:, 1], plain[(HOOK, "uncond")][:, 1])
    delta = plain[(HOOK, "cond")][0, 1]  # (positions, channels) before the edit
    z = torch.relu(delta)
    inside = torch.from_numpy(region.flatten()).float()
    expected = delta.clone()
    expected[:, latent] += beta * z.norm(dim=-1) * inside - z[:, latent]  # delta + (new_c - z_c) f_c
    torch.testing.assert_close(steered[(HOOK, "cond")][0, 1], expected)


def test_steering_refuses_bad_input(sd1):
    channels, grid = grid_of(sd1)
    sae = identity_sae(channels, grid)
    with pytest.raises(ValueError, match="outside the schedule"):
        with steer(sd1, sae, [0], at_steps=[7], steps=3):
            pass
    with pytest.raises(ValueError, match="needs region"):
        with steer(sd1, sae, [0], mode="spatial", at_steps="all", steps=3):
            pass
    other = TopKSAE(channels, channels, k=1, metadata={"hook_name": "down_blocks.2.attentions.1"})
    with pytest.raises(ValueError, match="unknown hookpoint"):
        with steer(sd1, other, [0], steps=3):
            pass


def test_sae_of_another_width_is_refused(sd1):
    channels, grid = grid_of(sd1)
    wrong = TopKSAE(channels * 2, 8, k=2, metadata={"hook_name": HOOK})
    with pytest.raises(ValueError, match=f"reads {channels * 2}-dim activations"):
        with steer(sd1, wrong, [0], steps=3):
            pass


def test_intact_reads_the_prompted_shape_and_colour_off_real_renders():
    from cadiff.sae.steering_eval import intact
    from cadiff.worlds.shapes import load_evaluator, render

    images = render(["circle", "star"], ["red", "blue"], ["solid", "solid"], seed=3).images
    ev = load_evaluator()
    assert intact(images, ["circle", "star"], ["red", "blue"], ev).tolist() == [True, True]
    assert intact(images, ["square", "star"], ["red", "green"], ev).tolist() == [False, False]
