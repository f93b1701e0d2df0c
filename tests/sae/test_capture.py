"""Capture: hookpoint names, residual update = output - input, branches under guidance, shards and resuming."""

from __future__ import annotations

import os

import pytest
import torch

from cadiff.sae import ActivationCapture, ActivationStore, collect_activations, hookpoints, resolve_steps

SD1_HOOKPOINTS = ["down_blocks.0.attentions.0", "mid_block.attentions.0", "up_blocks.1.attentions.0",
                  "up_blocks.1.attentions.1"]
EMBEDDED_HOOKPOINTS = ["down_blocks.0.attentions.0", "down_blocks.1.attentions.0", "mid_block.attentions.0",
                       "up_blocks.1.attentions.0", "up_blocks.1.attentions.1", "up_blocks.2.attentions.0",
                       "up_blocks.2.attentions.1"]


def run(pipe, prompts, seeds, guidance=4.0, steps=3):
    from cadiff import generate

    return generate(pipe, prompts, seeds, steps=steps, guidance=guidance)


def test_hookpoints_resolve_on_tiny_sd1(sd1):
    from diffusers.models.transformers.transformer_2d import Transformer2DModel

    assert hookpoints(sd1) == SD1_HOOKPOINTS
    for name in SD1_HOOKPOINTS:
        assert isinstance(sd1.unet.get_submodule(name), Transformer2DModel)


def test_hookpoints_resolve_on_embedded_model():
    from cadiff.worlds.shapes import shipped_path

    if not (shipped_path("pipeline") / "model_index.json").is_file():
        pytest.skip("the embedded model is not shipped in this checkout")
    import cadiff

    assert hookpoints(cadiff.load_pipeline()) == EMBEDDED_HOOKPOINTS


def test_unknown_hookpoint_lists_valid_ones(sd1):
    with pytest.raises(ValueError, match="down_blocks.2.attentions.1.*mid_block.attentions.0|this model's hookpoints"):
        ActivationCapture(sd1, ["down_blocks.2.attentions.1"], at_steps=[0])
    with pytest.raises(ValueError, match="mid_block.attentions.0"):
        ActivationCapture(sd1, ["nope"], at_steps=[0])


def test_steps_outside_schedule_are_refused():
    assert resolve_steps("first,mid,last", 25) == [0, 12, 24]
    assert resolve_steps("final", 25) == [20, 21, 22, 23, 24]
    with pytest.raises(ValueError, match="outside the schedule"):
        resolve_steps([30], 25)
    with pytest.raises(ValueError, match="cannot read step"):
        resolve_steps("soon", 25)


def test_captured_update_is_output_minus_input(sd1):
    name = "mid_block.attentions.0"
    seen = []

    def raw(module, args, kwargs, output):  # the module's own (B, C, H, W) input and output
        inp = args[0] if args else kwargs["hidden_states"]
        out = output[0] if isinstance(output, tuple) else output.sample
        seen.append((inp.detach().clone(), out.detach().clone()))

    handle = sd1.unet.get_submodule(name).register_forward_hook(raw, with_kwargs=True)
    try:
        with ActivationCapture(sd1, [name], at_steps=[0, 1, 2]) as cap, ActivationCapture(sd1, [name], [0, 1, 2],
                                                                                      readout="output") as cap_out:
            run(sd1, ["a red circle", "a blue star"], [0, 1])
    finally:
        handle.remove()
    update, output = cap.take(), cap_out.take()
    assert len(seen) == 3  # one denoiser call per step, [uncond, cond] batched
    for step, (inp, out) in enumerate(seen):
        expected = (out - inp).flatten(2).transpose(1, 2)
        assert torch.equal(update[(name, "uncond")][:, step], expected[:2])
        assert torch.equal(update[(name, "cond")][:, step], expected[2:])
        assert torch.equal(output[(name, "cond")][:, step], out.flatten(2).transpose(1, 2)[2:])


def test_branches_are_kept_apart_under_guidance(sd1):
    name = "down_blocks.0.attentions.0"
    with ActivationCapture(sd1, [name], at_steps=[0, 2]) as cap, ActivationCapture(sd1, [name], [0, 2],
                                                                                  readout="output") as cap_out:
        run(sd1, ["a red circle", "a blue star"], [7, 7], guidance=4.0)
        guided = cap.take()
        cap_out.take()
        run(sd1, ["", ""], [7, 7], guidance=1.0)
        empty, empty_out = cap.take(), cap_out.take()
        run(sd1, ["a red circle", "a blue star"], [7, 7], guidance=1.0)
        unguided, unguided_out = cap.take(), cap_out.take()
    assert set(empty) == {(name, "cond")}  # no guidance: one branch
    # At the first step the latents do not depend on guidance: uncond = the empty prompt, cond = the prompt.
    eps32 = torch.finfo(torch.float32).eps
    for got, want, out in ((guided[(name, "uncond")], empty, empty_out),
                           (guided[(name, "cond")], unguided, unguided_out)):
        # batch 4 vs 2 rounds differently; the update is out - in, rounding at the scale of |in| ~ |out|
        torch.testing.assert_close(got[:, 0], want[(name, "cond")][:, 0], rtol=0,
                                   atol=64 * eps32 * float(out[(name, "cond")][:, 0].abs().max()))
    assert not torch.allclose(guided[(name, "cond")][0, 0], guided[(name, "cond")][1, 0])  # prompts differ
    # The step index comes from the scheduler: by the last step guidance has changed the latents.
    assert not torch.allclose(guided[(name, "cond")][:, 1], unguided[(name, "cond")][:, 1])


def test_collect_writes_shards_and_resumes(sd1, tmp_path):
    prompts, seeds = ["a red circle", "a blue star", "a green heart"], [0, 1, 2]
    kwargs = dict(hookpoints=["mid_block.attentions.0"], at_steps="first,last", steps=3,
                  guidance=4.0, shard_size=2, shapes_world=True)
    store = collect_activations(sd1, prompts, seeds, tmp_path / "acts", **kwargs)
    assert len(store.shards) == 2 and store.num_images() == 3 and store.steps == [0, 2]
    meta = store.metadata()
    assert meta["prompts"] == prompts and meta["mask"].shape == meta["image"].shape[:3]
    assert meta["colour"].tolist() == [0, 2, 1]  # red, blue, green from the prompts
    first = store.read(store.shards[1])
    store.shards[1].unlink()  # an interrupted capture: the second shard never appeared
    store = collect_activations(sd1, prompts, seeds, tmp_path / "acts", **kwargs)
    again = store.read(store.shards[1])
    assert all(torch.equal(first[k], again[k]) for k in first)
    with pytest.raises(FileExistsError, match="other settings"):
        collect_activations(sd1, prompts, [5, 6, 7], tmp_path / "acts", **kwargs)


def test_truncated_and_empty_shards_give_clear_errors(sd1, tmp_path):
    store = collect_activations(sd1, ["a red circle"], [0], tmp_path / "acts", hookpoints=["mid_block.attentions.0"],
                                at_steps=[0], steps=2, guidance=4.0)
    data = store.shards[0].read_bytes()
    store.shards[0].write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        list(store.activations("mid_block.attentions.0", "cond"))
    store.shards[0].unlink()
    with pytest.raises(ValueError, match="no activation shards"):
        ActivationStore(tmp_path / "acts")
    with pytest.raises(FileNotFoundError, match="not an activation folder"):
        ActivationStore(tmp_path)


def test_overwrite_replaces_a_capture_only_once_the_new_one_is_complete(sd1, tmp_path):
    kwargs = dict(hookpoints=["mid_block.attentions.0"], at_steps=[0], steps=2, guidance=4.0,
                  shard_size=1)
    out = tmp_path / "acts"
    collect_activations(sd1, ["a red circle", "a blue star"], [0, 1], out, **kwargs)
    old = {p.name: p.read_bytes() for p in out.iterdir()}

    def interrupt(n, seen=[]):
        seen.append(n)
        if len(seen) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        collect_activations(sd1, ["a green heart"] * 3, [5, 6, 7], out, overwrite=True, progress=interrupt, **kwargs)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == old and sorted(os.listdir(tmp_path)) == ["acts"]
    store = collect_activations(sd1, ["a green heart"] * 3, [5, 6, 7], out, overwrite=True, **kwargs)
    assert store.path == out and store.metadata()["prompts"] == ["a green heart"] * 3
    assert sorted(os.listdir(tmp_path)) == ["acts"]
