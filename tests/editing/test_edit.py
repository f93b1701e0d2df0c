"""Masks, reversible ablation, one-call edits and export, on tiny SD 1.x / 2.x / SDXL pipelines."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

import cadiff
from cadiff.editing import Mask, ablated, apply_mask, edited_copy, export_pipeline
from tiny_pipelines import tiny_sd

KW = dict(seeds=[0, 1], steps=3, guidance=4.0, progress=False)


def _state(pipe):
    return {k: v.clone() for k, v in pipe.unet.state_dict().items()}


@pytest.fixture(scope="module")
def sd1():
    return tiny_sd("sd1")


@pytest.fixture(scope="module")
def attr(sd1):
    return cadiff.attribute(sd1, "a circle", preserve=["a square"], **KW)


def test_ablated_zeroes_inside_and_restores_bit_exactly(sd1, attr):
    mask = attr.select(ratio=0.25)
    before = _state(sd1)
    with ablated(sd1, mask):
        params = dict(sd1.unet.named_parameters())
        for name, ind in mask.indices.items():
            assert (params[name].detach().reshape(-1)[ind] == 0).all()
    after = _state(sd1)
    assert all(torch.equal(before[k], after[k]) for k in before)
    with pytest.raises(RuntimeError, match="boom"):
        with ablated(sd1, mask):
            raise RuntimeError("boom")
    after = _state(sd1)
    assert all(torch.equal(before[k].view(torch.uint8), after[k].view(torch.uint8)) for k in before)


def test_mask_union_save_load_and_wrong_model(sd1, attr, tmp_path):
    a, b = attr.select(ratio=0.25), attr.select(ratio=0.5, scope="matrix")
    u = a | b
    for n in u.indices:
        expect = set(a.indices.get(n, torch.zeros(0)).tolist()) | set(b.indices.get(n, torch.zeros(0)).tolist())
        assert set(u.indices[n].tolist()) == expect
    assert len(u) >= max(len(a), len(b))
    back = Mask.load(u.save(tmp_path / "m.safetensors"))
    assert back.fingerprint == u.fingerprint and all(torch.equal(back.indices[n], u.indices[n]) for n in u.indices)
    other = tiny_sd("sd1", seed=3)
    with pytest.raises(ValueError, match="was made with model"):
        apply_mask(other, back)
    with pytest.raises(ValueError, match="was made with model"):
        with ablated(other, back):
            pass
    with pytest.raises(ValueError, match="not a mask file"):
        Mask.load(attr.save(tmp_path / "a.attr.safetensors"))


def test_empty_selection_is_an_error(attr):
    with pytest.raises(ValueError, match="is empty"):
        attr.select(ratio=0.001)  # rows of 16-64 inputs: int(0.001 * in_features) = 0


def test_edited_copy_changes_only_the_mask_and_leaves_the_original(sd1, attr):
    mask = attr.select(ratio=0.25)
    before = _state(sd1)
    edited = edited_copy(sd1, mask)
    assert all(torch.equal(before[k], v) for k, v in sd1.unet.state_dict().items())
    changed = 0
    for name, p in edited.unet.named_parameters():
        diff = (p.detach() != before[name]).reshape(-1).nonzero().reshape(-1)
        assert set(diff.tolist()) <= set(mask.indices.get(name, torch.zeros(0)).tolist())
        changed += diff.numel()
    assert 0 < changed <= len(mask)
    assert edited.text_encoder is sd1.text_encoder  # shared, not copied


def test_export_loads_in_stock_diffusers_without_cadiff(sd1, attr, tmp_path):
    edited = edited_copy(sd1, attr.select(ratio=0.25))
    out = export_pipeline(edited, tmp_path / "edited", info={"zeroed": 1})
    assert json.loads((out / "cadiff_edit.json").read_text())["zeroed"] == 1
    code = (
        "import sys, torch\n"
        "from diffusers import DiffusionPipeline\n"
        f"p = DiffusionPipeline.from_pretrained({str(out)!r})\n"
        "img = p('a circle', num_inference_steps=2, guidance_scale=4.0, output_type='np').images\n"
        "assert not any(m == 'cadiff' or m.startswith('cadiff.') for m in sys.modules), 'cadiff imported'\n"
        "print(img.shape)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    from diffusers import DiffusionPipeline

    loaded = DiffusionPipeline.from_pretrained(str(out))
    for k, v in edited.unet.state_dict().items():
        assert torch.equal(loaded.unet.state_dict()[k], v)
    with pytest.raises(FileExistsError):
        export_pipeline(edited, out)


@pytest.mark.parametrize("kind", ["sd2", "sdxl"])
def test_attribute_then_erase_end_to_end(kind):
    pipe = tiny_sd(kind)
    before = _state(pipe)
    result = cadiff.erase(pipe, ["a circle", "a red square"], cadiff.CADConfig(), preserve=["a star"], ratio=0.25,
                          **KW)
    edited = result.pipeline
    assert all(torch.equal(before[k], v) for k, v in pipe.unet.state_dict().items())
    zeroed = sum(int(((p.detach() == 0) & (before[n] != 0)).sum()) for n, p in edited.unet.named_parameters())
    assert zeroed > 0
    images = cadiff.generate(edited, ["a circle"], seeds=[0], steps=2, guidance=4.0)
    assert images.shape[0] == 1 and images.dtype == np.uint8
    amp = cadiff.amplify(pipe, "a circle", ratio=0.25, **KW).pipeline
    assert any(not torch.equal(before[n], p.detach()) for n, p in amp.unet.named_parameters())


def test_edited_copy_keeps_every_dtype_of_a_mixed_precision_pipeline():
    pipe = tiny_sd("sdxl", dtype=torch.float16)
    pipe.vae.to(torch.float32)  # SDXL-style: fp16 UNet and text encoders, fp32 VAE
    attr = cadiff.attribute(pipe, "a circle", **KW)
    edited = edited_copy(pipe, attr.select(ratio=0.25))
    assert (edited.unet.dtype, edited.vae.dtype) == (torch.float16, torch.float32)
    assert (pipe.unet.dtype, pipe.vae.dtype, pipe.text_encoder.dtype) == (torch.float16, torch.float32, torch.float16)
    assert edited.unet is not pipe.unet and edited.vae is pipe.vae


def test_rounds_rescore_the_edited_model_and_grow_the_mask(sd1):
    before = _state(sd1)
    one = cadiff.erase(sd1, "a circle", cadiff.CADConfig(), ratio=0.1, **KW).mask
    result = cadiff.erase(sd1, "a circle", cadiff.CADConfig(), ratio=0.1, rounds=2, **KW)
    last, two = result.attributions, result.mask
    assert result.rounds[1].indices.keys() == one.indices.keys() and result.rounds[2] is two
    assert all(torch.equal(before[k], v) for k, v in sd1.unet.state_dict().items())  # original untouched
    assert two.fingerprint == one.fingerprint == cadiff.model_fingerprint(sd1)  # indices address the original
    first = {n: set(i.tolist()) for n, i in one.indices.items()}
    second = {n: set(i.tolist()) for n, i in two.indices.items()}
    assert all(first[n] <= second.get(n, set()) for n in first)  # round 1 is the same selection
    assert len(two) > len(one)  # round 2 adds weights that were not zeroed yet
    assert last[0].metadata["fingerprint"] != cadiff.model_fingerprint(sd1)  # round 2 scored the edited model
    with pytest.raises(ValueError, match="rounds"):
        cadiff.erase(sd1, "a circle", cadiff.CADConfig(), ratio=0.1, rounds=0, **KW)
    mixed = cadiff.erase(sd1, "a circle", cadiff.CADConfig(), round_ratios=(0.1, 0.05), **KW)
    assert mixed.config.rounds == 2 and mixed.config.ratio == 0.1
    assert {n: i.tolist() for n, i in mixed.rounds[1].indices.items()} == {n: i.tolist() for n, i in one.indices.items()}
    added = len(mixed.rounds[2]) - len(one)
    assert 0 < added < len(two) - len(one)  # round 2 zeroes its own, smaller share
    for bad in ({"ratio": 0.2}, {"rounds": 3}, {"count": 4}):
        with pytest.raises(ValueError, match="round_ratios sets the ratio and the number of rounds"):
            cadiff.erase(sd1, "a circle", cadiff.CADConfig(), round_ratios=(0.1, 0.05), **bad, **KW)
