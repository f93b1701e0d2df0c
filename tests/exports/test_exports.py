"""Exports: the edit written as a diffusers folder or a single-file checkpoint that diffusers reads back to the edited
weights; everything refused is refused before any file is written; `cadiff export` reads a run folder."""

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from cadiff.attribution import select_parameters
from cadiff.attribution.mask import Mask
from cadiff.editing import edited_copy
from cadiff.exports import Edit, export, weight_difference
from cadiff.models import load_pipeline
from cadiff.models.loading import denoiser, model_fingerprint
from tiny_pipelines import tiny_sd


def zeroing_edit(pipe, every: int = 7) -> Edit:
    """Every `every`-th weight of the transformer blocks' matrices (the `linear` group) zeroed, as a CAD erase zeroes
    them."""
    net = denoiser(pipe)
    names = [n for n, p in select_parameters(net, "linear").items() if p.ndim == 2 and n.endswith(".weight")]
    shapes = {n: tuple(net.get_parameter(n).shape) for n in names}
    indices = {n: torch.arange(0, net.get_parameter(n).numel(), every) for n in names}
    mask = Mask(indices, shapes, {"fingerprint": model_fingerprint(pipe)})
    return Edit(edited_copy(pipe, mask), pipe, {"method": "test", "zeroed": len(mask)})


def _same(net_a, net_b) -> None:
    a, b = net_a.state_dict(), net_b.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_the_difference_of_a_zeroing_edit_is_minus_the_zeroed_weights_in_their_own_dtype():
    pipe = tiny_sd("sd1", dtype=torch.bfloat16)
    edit = zeroing_edit(pipe)
    base, edited = denoiser(pipe), denoiser(edit.edited)
    assert edit.difference and all(d.dtype == torch.bfloat16 for d in edit.difference.values())
    for name, d in edit.difference.items():
        w = base.get_parameter(name).detach()
        assert torch.equal(w + d, edited.get_parameter(name).detach())
        assert torch.equal(d[d != 0], -w[d != 0])
    assert weight_difference(base, base) == {}


LAYOUT_FAMILIES = ["sd1", "sd2", "sdxl", "sd3", "flux", "flux2", "chroma", "zimage", "lumina2", "qwenimage", "hidream"]


@pytest.mark.parametrize("name", LAYOUT_FAMILIES)
def test_a_single_file_export_reads_back_to_the_edited_weights(name, tmp_path, at_tiny_width):
    pipe = tiny_sd(name)
    pipe.save_pretrained(tmp_path / "folder")
    edit = zeroing_edit(pipe)
    out = export(edit, tmp_path / "edited.safetensors", "single-file")
    with safe_open(str(out), "pt") as f:
        info = json.loads(f.metadata()["cadiff"])
        keys = set(f.keys())
    assert info["format"] == "single-file" and info["base_fingerprint"] == model_fingerprint(pipe)
    assert info["edited_fingerprint"] == model_fingerprint(edit.edited) != info["base_fingerprint"]
    if name != "qwenimage":  # (published in diffusers' own names)
        assert not any(k.startswith(("unet.", "transformer.", "down_blocks.", "transformer_blocks.")) for k in keys)
    loaded = load_pipeline(out, config=str(tmp_path / "folder"))
    _same(denoiser(edit.edited), denoiser(loaded))
    if name == "sd2":  # its OpenCLIP text encoder in OpenCLIP's names, as SD 2.x checkpoints keep it
        assert "cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight" in keys
    if name in ("sd1", "sd2", "sdxl"):  # the whole checkpoint
        _same(edit.edited.vae, loaded.vae)
        _same(edit.edited.text_encoder, loaded.text_encoder)


def test_the_diffusers_folder_holds_the_edited_pipeline_and_its_record(tmp_path):
    pipe = tiny_sd("sd1")
    edit = zeroing_edit(pipe)
    out = export(edit, tmp_path / "edited", "diffusers")
    assert json.loads((out / "cadiff_edit.json").read_text())["method"] == "test"
    _same(denoiser(edit.edited), denoiser(load_pipeline(out)))


def test_what_an_export_refuses_is_refused_before_any_file(tmp_path):
    pipe = tiny_sd("sd1")
    edit = zeroing_edit(pipe)
    with pytest.raises(ValueError, match="unknown export format 'ckpt'; choose from diffusers, .*single-file"):
        export(edit, tmp_path / "a.safetensors", "ckpt")
    with pytest.raises(ValueError, match="has no layout for the pixart family .*--format diffusers or peft"):
        export(zeroing_edit(tiny_sd("pixart")), tmp_path / "b.safetensors", "single-file")
    with pytest.raises(ValueError, match="changes no weight of the denoiser: there is nothing to export"):
        export(Edit(pipe, pipe), tmp_path / "c.safetensors", "comfyui")
    with pytest.raises(ValueError, match="writes the edit as a difference from the original model"):
        export(Edit(edit.edited), tmp_path / "d.safetensors", "comfyui")
    assert list(tmp_path.iterdir()) == []


def test_cadiff_export_writes_an_erase_run_and_checks_the_model_it_was_made_from(tmp_path):
    from cadiff.cli import main

    tiny_sd("sd1").save_pretrained(tmp_path / "model")
    tiny_sd("sd1", seed=1).save_pretrained(tmp_path / "other")
    assert main(["erase", "a red circle", "--method", "cad", "--ratio", "0.05", "--components", "linear", "--seeds",
                 "1", "--steps", "2", "--model", str(tmp_path / "model"), "--out", str(tmp_path / "run")]) == 0
    assert main(["export", str(tmp_path / "run"), "--format", "single-file", "--out",
                 str(tmp_path / "edited.safetensors")]) == 0
    loaded = load_pipeline(tmp_path / "edited.safetensors", config=str(tmp_path / "model"))
    _same(denoiser(load_pipeline(tmp_path / "run" / "pipeline")), denoiser(loaded))
    assert main(["export", str(tmp_path / "run"), "--format", "comfyui", "--model", str(tmp_path / "other"),
                 "--out", str(tmp_path / "patch.safetensors")]) == 2
    assert not (tmp_path / "patch.safetensors").exists()
    assert main(["export", str(tmp_path / "model"), "--format", "diffusers", "--out", str(tmp_path / "x")]) == 2


EVERY_FAMILY = ["sd1", "sd2", "sdxl", "sd3", "pixart", "sana", "flux", "qwenimage", "chroma", "flux2", "zimage",
                "lumina2", "cogview4", "hunyuanimage", "hidream"]


def _weights(net) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


@pytest.mark.parametrize("name", EVERY_FAMILY)
def test_lycoris_applies_the_patch_to_the_original_model_and_gives_the_edited_weights(name, tmp_path):
    """LyCORIS's own loader (`create_lycoris_from_weights`, merged at strength 1 and 0.5) on a fresh copy of the
    original denoiser."""
    import lycoris

    pipe = tiny_sd(name)
    edit = zeroing_edit(pipe)
    path = export(edit, tmp_path / "patch.safetensors", "lycoris")
    for strength in (1.0, 0.5):
        net = denoiser(tiny_sd(name))  # the same seed: the original weights
        network, _ = lycoris.create_lycoris_from_weights(strength, str(path), net)
        network.merge_to(strength)
        got, base, edited = _weights(net), _weights(denoiser(pipe)), _weights(denoiser(edit.edited))
        assert got.keys() == edited.keys()
        for k in got:
            want = edited[k] if strength == 1 else base[k] + 0.5 * (edited[k] - base[k])
            assert torch.equal(got[k], want), (strength, k)


@pytest.mark.parametrize("name", LAYOUT_FAMILIES)
def test_a_comfyui_patch_names_the_single_file_weights_and_adds_up_to_the_edited_file(name, tmp_path):
    """Each key names a weight of the original-layout checkpoint `single-file` writes, at its shape (a key a tool
    would not find fails here), and adding the differences to the original model's file gives the edited model's
    file: what ComfyUI's, A1111's and Forge's loaders do with `.diff` / `.diff_b`."""
    from cadiff.exports.layouts import LAYOUTS, original_checkpoint

    pipe = tiny_sd(name)
    edit = zeroing_edit(pipe)
    form = "a1111" if name in ("sd1", "sd2", "sdxl") else "comfyui"
    patch = load_file(export(edit, tmp_path / "patch.safetensors", form))
    family = "unet" if name in ("sd1", "sd2", "sdxl") else name
    prefix = LAYOUTS[family].prefix
    before, after = original_checkpoint(pipe, family), original_checkpoint(edit.edited, family)
    patched = _patched(before, patch, prefix)
    assert patched.keys() == after.keys()
    assert all(torch.equal(patched[k], after[k]) for k in after)
    assert len(patch) < len(after)  # only what changed


def test_a_comfyui_patch_of_pixart_names_its_diffusers_modules(tmp_path):
    """PixArt has no original layout here: its patch keys are diffusers' module names under `transformer.`, which
    ComfyUI maps onto its own (fused) weights; each names a weight of the denoiser at its shape."""
    pipe = tiny_sd("pixart")
    edit = zeroing_edit(pipe)
    patch = load_file(export(edit, tmp_path / "patch.safetensors", "comfyui"))
    net = denoiser(pipe)
    assert patch and all(k.startswith("transformer.") and k.endswith(".diff") for k in patch)
    for key, diff in patch.items():
        name = key.removeprefix("transformer.").removesuffix(".diff") + ".weight"
        assert net.get_parameter(name).shape == diff.shape
        assert torch.equal(net.get_parameter(name) + diff, denoiser(edit.edited).get_parameter(name))


def _patched(checkpoint: dict, patch: dict, prefix: str) -> dict:
    """`checkpoint` with a patch in original names added, as the tools add it (in fp32, rounded to the weight's
    dtype); every key must name one weight of the checkpoint at its shape."""
    out = dict(checkpoint)
    for key, diff in patch.items():
        module, kind = key.rsplit(".", 1)
        module = (module.replace("lora_unet_", "", 1) if module.startswith("lora_unet_")
                  else module.removeprefix("diffusion_model."))
        target = _original_key(module, {"diff": "weight", "diff_b": "bias"}[kind], checkpoint, prefix)
        assert checkpoint[target].shape == diff.shape, key
        out[target] = (checkpoint[target].float() + diff.float()).to(checkpoint[target].dtype)
    return out


def _original_key(module: str, kind: str, checkpoint: dict, prefix: str) -> str:
    """The checkpoint key a patch's module names: LDM names come with dots as underscores, matched back to the one
    checkpoint key they spell."""
    candidates = [k for k in checkpoint if k.startswith(prefix) and k.endswith("." + kind)
                  and k[len(prefix):-len(kind) - 1].replace(".", "_") == module.replace(".", "_")]
    assert len(candidates) == 1, (module, candidates)
    return candidates[0]


@pytest.mark.parametrize("name", EVERY_FAMILY)
def test_a_peft_adapter_switches_the_edit_on_off_and_in_part(name, tmp_path):
    """Loaded with peft's API on the original model: on, the weights are the edited ones bit for bit and it samples
    the edited model's image; at 0.5, half the difference; off, it samples the original model's image."""
    import cadiff
    from cadiff.exports.peft import attach

    pipe = tiny_sd(name)
    edit = zeroing_edit(pipe)
    path = export(edit, tmp_path / "adapter", "peft")
    fresh = tiny_sd(name)
    attach(fresh, path, "erase")
    net = denoiser(fresh)
    base, edited = denoiser(pipe), denoiser(edit.edited)
    layers = {n: m for n, m in net.named_modules() if "erase" in getattr(m, "shira_weight", {})}
    assert set(layers) == {n.rpartition(".")[0] for n in edit.difference}

    def switch(on: bool = True, scale: float = 1.0) -> None:
        if hasattr(net, "set_adapters"):  # diffusers' methods
            net.enable_adapters() if on else net.disable_adapters()
            net.set_adapters("erase", scale) if on else None
        else:  # PixArt: peft's layers
            for layer in layers.values():
                layer.enable_adapters(on)
                layer.set_scale("erase", scale)

    def weights(scale):
        switch(True, scale)
        return {n: m.get_base_layer().weight.detach() + m.get_delta_weight("erase") for n, m in layers.items()}

    for n, w in weights(1.0).items():
        assert torch.equal(w, edited.get_submodule(n).weight.detach())
    for n, w in weights(0.5).items():
        b = base.get_submodule(n).weight.detach()
        assert torch.equal(w, b + 0.5 * (edited.get_submodule(n).weight.detach() - b))

    def image(p):
        return cadiff.generate(p, ["a red circle"], [0], steps=2)

    switch(True)
    assert (image(fresh) == image(edit.edited)).all()
    switch(False)
    assert (image(fresh) == image(pipe)).all()


def test_the_peft_adapter_samples_as_the_edited_pipeline_and_loads_with_peft_model(tmp_path):
    import cadiff
    from peft import PeftModel

    from cadiff.exports.peft import attach

    pipe = tiny_sd("sd1")
    edit = zeroing_edit(pipe)
    path = export(edit, tmp_path / "adapter", "peft")
    images = {key: cadiff.generate(p, ["a red circle"], [0], steps=2) for key, p in
              (("base", pipe), ("edited", edit.edited))}
    assert not (images["base"] == images["edited"]).all()
    fresh = tiny_sd("sd1")
    attach(fresh, path, "erase")
    assert (cadiff.generate(fresh, ["a red circle"], [0], steps=2) == images["edited"]).all()
    fresh.unet.disable_adapters()
    assert (cadiff.generate(fresh, ["a red circle"], [0], steps=2) == images["base"]).all()
    wrapped = PeftModel.from_pretrained(tiny_sd("sd1").unet, str(path))  # peft's own loader, unchanged files
    merged = wrapped.merge_and_unload()
    assert all(torch.equal(merged.get_parameter(n), edit.edited.unet.get_parameter(n))
               for n, _ in edit.edited.unet.named_parameters())
    with pytest.raises(ValueError, match="was made from model .* attach it to the model the edit was made from"):
        attach(tiny_sd("sd1", seed=3), path)


def test_an_edit_a_sparse_adapter_cannot_hold_is_refused_before_any_file(tmp_path):
    pipe = tiny_sd("sd1")
    net = denoiser(pipe)
    name = next(n for n, p in net.named_parameters() if p.ndim == 2 and p.shape[0] != p.shape[1])
    dense = Mask({name: torch.arange(net.get_parameter(name).numel())}, {name: tuple(net.get_parameter(name).shape)},
                 {"fingerprint": model_fingerprint(pipe)})
    with pytest.raises(ValueError, match="too dense for a sparse adapter: export --format comfyui, lycoris or"):
        export(Edit(edited_copy(pipe, dense), pipe), tmp_path / "a", "peft")
    conv = next(n for n, p in net.named_parameters() if p.ndim == 4)
    zeroed = Mask({conv: torch.arange(3)}, {conv: tuple(net.get_parameter(conv).shape)},
                  {"fingerprint": model_fingerprint(pipe)})
    with pytest.raises(ValueError, match=f"the edit changes {conv}, which a peft SHiRA adapter cannot hold"):
        export(Edit(edited_copy(pipe, zeroed), pipe), tmp_path / "b", "peft")
    pixart = tiny_sd("pixart")
    table = "transformer_blocks.0.scale_shift_table"
    loose = Mask({table: torch.arange(3)}, {table: tuple(pixart.transformer.get_parameter(table).shape)},
                 {"fingerprint": model_fingerprint(pixart)})
    with pytest.raises(ValueError, match=f"changes {table}, a parameter of no Linear or convolution .* --format"):
        export(Edit(edited_copy(pixart, loose), pixart), tmp_path / "c.safetensors", "lycoris")
    assert list(tmp_path.iterdir()) == []


def test_an_esd_edit_and_an_amplify_edit_export_as_patches_that_give_their_weights(tmp_path):
    """ESD's edit is dense (every weight it trains moves, norms included): its patch holds what it changed (a weight
    that moved by more than half its size to the last rounding step of fp32 addition), too dense for a sparse
    adapter; CAD-Amplify's zeroing exports as the erase's does, exactly."""
    import cadiff
    from cadiff.editing.methods.esd import ESDConfig
    from cadiff.exports.layouts import original_checkpoint

    pipe = tiny_sd("sd1")
    esd = cadiff.erase(pipe, "a red circle", ESDConfig(iterations=2, lr=1e-3, steps=2), progress=False)
    amplified = cadiff.amplify(pipe, "a red circle", cadiff.CADConfig(components="linear", ratio=0.05, seeds=1,
                                                                      steps=2), progress=False)
    before = original_checkpoint(pipe, "unet")
    for label, result in (("esd", esd), ("amplify", amplified)):
        path = result.export(tmp_path / f"{label}.safetensors", format="comfyui")
        with safe_open(str(path), "pt") as f:
            assert json.loads(f.metadata()["cadiff"])["edit"]["method"] == {"esd": "esd", "amplify": "cad"}[label]
        after = original_checkpoint(result.pipeline, "unet")
        patched = _patched(before, load_file(path), "model.diffusion_model.")
        if label == "amplify":  # zeroed weights: exactly
            assert all(torch.equal(patched[k], after[k]) for k in after)
        else:  # trained weights: to the last rounding step, where a weight moved by more than half its size
            for k in after:
                torch.testing.assert_close(patched[k], after[k], rtol=0, atol=1e-9)
    assert len(load_file(tmp_path / "esd.safetensors")) > len(load_file(tmp_path / "amplify.safetensors"))
    with pytest.raises(ValueError, match="too dense for a sparse adapter|which a peft SHiRA adapter cannot hold"):
        esd.export(tmp_path / "esd-peft", format="peft")
