import json

import pytest
import torch

import cadiff
from cadiff.models import ModelLoadError, load_pipeline, model_fingerprint
from tiny_pipelines import tiny_sd


def test_shipped_pipeline_loads_with_stock_diffusers_alone(tmp_path):
    from diffusers import StableDiffusionPipeline

    from cadiff.worlds.shapes import shipped_path

    pipe = StableDiffusionPipeline.from_pretrained(str(shipped_path("pipeline")))
    pipe.set_progress_bar_config(disable=True)
    assert pipe.scheduler.config.prediction_type == "v_prediction"
    assert pipe.scheduler.config.clip_sample is False
    out = pipe("a red circle", num_inference_steps=4, guidance_scale=4.0, output_type="np",
               generator=torch.Generator().manual_seed(0)).images
    assert out.shape == (1, 32, 32, 3)


def test_generation_is_deterministic_per_seed(shapes_pipe):
    a = cadiff.generate(shapes_pipe, ["a blue star", "a blue star"], seeds=[5, 6], steps=6)
    b = cadiff.generate(shapes_pipe, ["a blue star"], seeds=[6], steps=6)
    assert a.dtype == "uint8" and a.shape == (2, 32, 32, 3)
    assert (a[1] == b[0]).all() and not (a[0] == a[1]).all()


def test_local_folder_roundtrip_and_fingerprint(tmp_path):
    pipe = tiny_sd("sd1")
    pipe.save_pretrained(tmp_path / "p")
    loaded = load_pipeline(tmp_path / "p")
    assert model_fingerprint(loaded) == model_fingerprint(pipe)
    with torch.no_grad():
        loaded.unet.conv_in.weight[0, 0, 0, 0] += 1
    assert model_fingerprint(loaded) != model_fingerprint(pipe)


def test_unknown_path_is_a_clear_error():
    with pytest.raises(ModelLoadError, match="not found"):
        load_pipeline("/no/such/model")


def test_folder_without_model_index(tmp_path):
    with pytest.raises(ModelLoadError, match="no model_index.json"):
        load_pipeline(tmp_path)


def test_pickle_checkpoint_is_refused_without_reading(tmp_path):
    ckpt = tmp_path / "model.ckpt"
    ckpt.write_bytes(b"\x80\x04not really a pickle")
    with pytest.raises(ModelLoadError, match="pickle"):
        load_pipeline(ckpt)


def test_corrupt_safetensors_is_a_clear_error(tmp_path):
    bad = tmp_path / "model.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{garbage")
    with pytest.raises(ModelLoadError, match="not a readable safetensors"):
        load_pipeline(bad)


def test_hub_id_not_in_cache_says_how_to_provide_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(ModelLoadError, match="never downloads"):
        load_pipeline("someone/not-cached-model")


def test_broken_pipeline_folder(tmp_path):
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline",
                                                           "unet": ["diffusers", "UNet2DConditionModel"]}))
    with pytest.raises(ModelLoadError, match="could not load"):
        load_pipeline(tmp_path)


def test_fp16_load(tmp_path):
    tiny_sd("sd1").save_pretrained(tmp_path / "p")
    pipe = load_pipeline(tmp_path / "p", dtype="fp16")
    assert pipe.unet.dtype == torch.float16
    with pytest.raises(ValueError, match="unknown dtype"):
        load_pipeline(tmp_path / "p", dtype="fp8")


def test_single_file_without_config_says_what_is_missing(tmp_path):
    from safetensors.torch import save_file

    f = tmp_path / "model.safetensors"
    save_file({"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(4, 4, 3, 3)}, str(f))
    with pytest.raises(ModelLoadError, match="needs its diffusers config locally"):
        load_pipeline(f)


def test_single_file_ldm_checkpoint_with_local_config_loads_the_same_model(tmp_path):
    from safetensors.torch import save_file

    from ldm_checkpoint import to_ldm_state_dict

    pipe = tiny_sd("sd1")
    pipe.save_pretrained(tmp_path / "folder")
    checkpoint = to_ldm_state_dict(pipe)
    assert "model.diffusion_model.input_blocks.0.0.weight" in checkpoint  # the original layout, not diffusers'
    assert not any(k.startswith(("unet.", "vae.", "text_encoder.", "down_blocks.")) for k in checkpoint)
    save_file(checkpoint, str(tmp_path / "model.safetensors"))

    loaded = load_pipeline(tmp_path / "model.safetensors", config=str(tmp_path / "folder"))

    assert type(loaded).__name__ == "StableDiffusionPipeline"
    for name in ("unet", "vae", "text_encoder"):
        want, got = getattr(pipe, name).state_dict(), getattr(loaded, name).state_dict()
        assert got.keys() == want.keys(), name
        assert all(torch.equal(got[k], want[k]) for k in want), name
    a = cadiff.generate(pipe, ["a red circle"], [0], steps=2, guidance=4.0)
    b = cadiff.generate(loaded, ["a red circle"], [0], steps=2, guidance=4.0)
    assert a.shape == (1, 16, 16, 3) and len(set(a.ravel().tolist())) > 10  # a real image, not a constant
    assert (a == b).all()


def _same_weights(a, b, names):
    for name in names:
        want, got = getattr(a, name).state_dict(), getattr(b, name).state_dict()
        assert got.keys() == want.keys(), name
        assert all(torch.equal(got[k], want[k]) for k in want), name


def test_sdxl_single_file_loads_as_an_sdxl_pipeline(tmp_path):
    from safetensors.torch import save_file

    from ldm_checkpoint import to_ldm_state_dict

    pipe = tiny_sd("sdxl")
    pipe.save_pretrained(tmp_path / "folder")
    save_file(to_ldm_state_dict(pipe), str(tmp_path / "sdxl.safetensors"))

    loaded = load_pipeline(tmp_path / "sdxl.safetensors", config=str(tmp_path / "folder"))

    assert type(loaded).__name__ == "StableDiffusionXLPipeline"
    _same_weights(pipe, loaded, ("unet", "vae", "text_encoder", "text_encoder_2"))


def _fake_hub_cache(cache, repo: str, folder) -> None:
    """A Hugging Face cache entry for `repo` holding `folder`'s files, laid out as huggingface_hub keeps them."""
    import shutil

    entry = cache / f"models--{repo.replace('/', '--')}"
    commit = "0" * 40
    (entry / "refs").mkdir(parents=True)
    (entry / "refs" / "main").write_text(commit)
    shutil.copytree(folder, entry / "snapshots" / commit)


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """An empty local Hugging Face cache, and a record of every host name lookup (each one refused)."""
    import socket

    import huggingface_hub.constants

    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    lookups = []

    def refuse(host, *args, **kwargs):
        lookups.append(host)
        raise OSError(f"test: no network (lookup of {host})")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    return cache, lookups


def _sd1_single_file(tmp_path):
    from safetensors.torch import save_file

    from ldm_checkpoint import to_ldm_state_dict

    pipe = tiny_sd("sd1")
    pipe.save_pretrained(tmp_path / "folder")
    save_file(to_ldm_state_dict(pipe), str(tmp_path / "model.safetensors"))
    return pipe, tmp_path / "model.safetensors"


def test_single_file_without_config_never_looks_up_a_host(tmp_path, hub_cache):
    cache, lookups = hub_cache
    _, path = _sd1_single_file(tmp_path)
    with pytest.raises(ModelLoadError, match=r"--config.*stable-diffusion-v1-5/stable-diffusion-v1-5") as err:
        load_pipeline(path)
    assert "internet" not in str(err.value) and "never downloads" in str(err.value)
    with pytest.raises(ModelLoadError, match="neither a local folder nor a hub id in the local"):
        load_pipeline(path, config="someone/not-cached")
    assert lookups == []


def test_single_file_without_config_uses_the_cached_config_of_its_kind(tmp_path, hub_cache):
    cache, lookups = hub_cache
    pipe, path = _sd1_single_file(tmp_path)
    _fake_hub_cache(cache, "stable-diffusion-v1-5/stable-diffusion-v1-5", tmp_path / "folder")

    loaded = load_pipeline(path)

    assert type(loaded).__name__ == "StableDiffusionPipeline"
    _same_weights(pipe, loaded, ("unet", "vae", "text_encoder"))
    assert lookups == []


def test_pickle_suffix_in_capitals_is_called_a_pickle(tmp_path):
    ckpt = tmp_path / "MODEL.CKPT"
    ckpt.write_bytes(b"\x80\x04not really a pickle")
    with pytest.raises(ModelLoadError, match="pickle checkpoint"):
        load_pipeline(ckpt)


def test_sampling_settings_survive_the_stock_save_pretrained(shapes_pipe, tmp_path):
    from diffusers import EulerDiscreteScheduler

    from cadiff.models import sampling_defaults
    from cadiff.models.loading import sampling_source
    from cadiff.worlds import world_of

    edited = cadiff.erase(shapes_pipe, "circle", cadiff.CADConfig(), seeds=1, steps=2, ratio=0.01,
                          progress=False).pipeline
    edited.save_pretrained(tmp_path / "plain")  # the README's line: no cadiff export call
    again = load_pipeline(tmp_path / "plain")
    assert sampling_defaults(again) == {"num_inference_steps": 25, "guidance_scale": 4.0} and world_of(again).name == "shapes"
    assert sampling_source(again) == "the model's recorded settings"
    again.scheduler = EulerDiscreteScheduler.from_config(again.scheduler.config)  # a user swaps the sampler
    assert sampling_defaults(again)["num_inference_steps"] == 25

    tiny_sd("sd1").save_pretrained(tmp_path / "other")
    other = load_pipeline(tmp_path / "other")
    assert sampling_defaults(other) == {"num_inference_steps": 50, "guidance_scale": 7.5}
    assert "records none" in sampling_source(other)


def test_an_older_folder_with_cadiff_json_keeps_its_settings_on_a_stock_save(tmp_path):
    from cadiff.models import sampling_defaults

    tiny_sd("sd1").save_pretrained(tmp_path / "old")
    (tmp_path / "old" / "cadiff.json").write_text(json.dumps({"num_inference_steps": 7, "guidance_scale": 3.0}))
    load_pipeline(tmp_path / "old").save_pretrained(tmp_path / "new")
    assert sampling_defaults(load_pipeline(tmp_path / "new")) == {"num_inference_steps": 7, "guidance_scale": 3.0}


def test_the_known_words_are_listed_in_one_order(shapes_pipe):
    from cadiff.models.vocabulary import check_known_words

    messages = set()
    for _ in range(3):
        with pytest.raises(ValueError) as err:
            check_known_words(shapes_pipe, ["a teal circle"])
        messages.add(str(err.value))
    (message,) = messages
    assert message.endswith("a, an, shape, image, of, red, green, blue, yellow, purple, orange, solid, striped, "
                            "outlined, circle, square, triangle, star, cross, heart")


def test_sd3_single_file_loads_with_its_local_config(tmp_path):
    from safetensors.torch import save_file

    from ldm_checkpoint import to_sd3_single_file

    pipe = tiny_sd("sd3")
    pipe.save_pretrained(tmp_path / "folder")  # saved without T5: model_index lists text_encoder_3 as null
    save_file(to_sd3_single_file(pipe), str(tmp_path / "sd3.safetensors"))

    loaded = load_pipeline(tmp_path / "sd3.safetensors", config=str(tmp_path / "folder"))

    assert type(loaded).__name__ == "StableDiffusion3Pipeline"
    _same_weights(pipe, loaded, ("transformer", "vae", "text_encoder", "text_encoder_2"))


def test_flux_single_file_of_the_transformer_loads_with_its_local_config(tmp_path, at_tiny_width):
    from safetensors.torch import save_file

    from ldm_checkpoint import to_flux_single_file

    pipe = tiny_sd("flux")
    checkpoint = to_flux_single_file(pipe)  # the transformer alone, as flux1-dev.safetensors is published
    assert {"double_blocks.0.img_attn.qkv.weight", "single_blocks.0.linear1.weight", "guidance_in.in_layer.bias",
            "final_layer.adaLN_modulation.1.weight"} <= checkpoint.keys()
    assert not any(k.startswith(("transformer_blocks.", "single_transformer_blocks.", "vae.")) for k in checkpoint)
    save_file(checkpoint, str(tmp_path / "flux.safetensors"))
    bias = pipe.transformer.x_embedder.bias
    kept = bias.detach().clone()
    with torch.no_grad():  # the folder's own transformer differs: the loaded one must come from the file
        bias.add_(1.0)
        pipe.save_pretrained(tmp_path / "folder")
        bias.copy_(kept)

    loaded = load_pipeline(tmp_path / "flux.safetensors", config=str(tmp_path / "folder"))

    assert type(loaded).__name__ == "FluxPipeline"
    _same_weights(pipe, loaded, ("transformer", "vae", "text_encoder", "text_encoder_2"))
    a = cadiff.generate(pipe, ["a red circle"], [0], steps=2, guidance=3.5, height=16, width=16)
    b = cadiff.generate(loaded, ["a red circle"], [0], steps=2, guidance=3.5, height=16, width=16)
    assert a.shape == (1, 16, 16, 3) and len(set(a.ravel().tolist())) > 10  # a real image, not a constant
    assert (a == b).all()


def test_flux_schnell_file_loads_with_a_schnell_config_and_a_dev_config_is_refused(tmp_path, at_tiny_width):
    from diffusers import FluxTransformer2DModel
    from diffusers.loaders.single_file_utils import infer_diffusers_model_type
    from safetensors.torch import save_file

    from ldm_checkpoint import to_flux_single_file

    dev = tiny_sd("flux")
    dev.save_pretrained(tmp_path / "dev")
    torch.manual_seed(1)
    dev.transformer = FluxTransformer2DModel.from_config({**dev.transformer.config, "guidance_embeds": False})
    dev.save_pretrained(tmp_path / "schnell")
    checkpoint = to_flux_single_file(dev)
    assert not any(k.startswith("guidance_in.") for k in checkpoint)
    assert infer_diffusers_model_type(checkpoint) == "flux-schnell"
    save_file(checkpoint, str(tmp_path / "schnell.safetensors"))

    loaded = load_pipeline(tmp_path / "schnell.safetensors", config=str(tmp_path / "schnell"))
    assert loaded.transformer.config.guidance_embeds is False
    _same_weights(dev, loaded, ("transformer",))
    with pytest.raises(ModelLoadError, match="FluxTransformer2DModel.*check that --config belongs"):
        load_pipeline(tmp_path / "schnell.safetensors", config=str(tmp_path / "dev"))


def test_a_denoiser_only_file_with_a_config_folder_that_is_no_pipeline_is_refused(tmp_path):
    from safetensors.torch import save_file

    from ldm_checkpoint import to_flux_single_file

    save_file(to_flux_single_file(tiny_sd("flux")), str(tmp_path / "flux.safetensors"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="holds only a denoiser.*has no model_index.json: pass --config"):
        load_pipeline(tmp_path / "flux.safetensors", config=str(tmp_path / "empty"))


def test_embedded_models_are_named_embedded_colon_name(monkeypatch, tmp_path):
    from cadiff.models import loading

    default, named = load_pipeline(), load_pipeline("embedded:unet")
    assert model_fingerprint(default) == model_fingerprint(named)
    assert loading.describe_model(default, None)["source"] == "embedded:unet"
    assert loading.source_name("embedded:dit") == "embedded:dit" and loading.source_name("a/b") == "a/b"
    with pytest.raises(ModelLoadError, match="no embedded model 'vit': use one of embedded:unet, embedded:dit"):
        load_pipeline("embedded:vit")
    monkeypatch.setitem(loading.EMBEDDED, "dit", str(tmp_path / "absent"))  # an install without the DiT
    with pytest.raises(ModelLoadError, match="embedded:dit is not in this install.*cadiff shapes train --denoiser dit"):
        load_pipeline("embedded:dit")


def test_the_fingerprint_is_computed_once_per_version_of_the_weights(monkeypatch):
    """A calibrated search asks for it dozens of times: unchanged weights are hashed once; any in-place change
    (an ablation, its bit-exact restore, a permanent edit) makes it be computed again."""
    from cadiff.attribution.mask import Mask
    from cadiff.editing import ablated, apply_mask
    from cadiff.models import loading

    pipe = tiny_sd("sd1")
    hashed = []
    real = loading.check_weights
    monkeypatch.setattr(loading, "check_weights", lambda module, **kw: (hashed.append(1), real(module, **kw))[1])
    first = model_fingerprint(pipe)
    assert model_fingerprint(pipe) == first and len(hashed) == 1
    name = next(n for n, _ in pipe.unet.named_parameters() if n.endswith("ff.net.2.weight"))
    mask = Mask({name: torch.tensor([0, 1, 2])}, {name: tuple(dict(pipe.unet.named_parameters())[name].shape)},
                {"fingerprint": first})
    with ablated(pipe, mask):
        inside = model_fingerprint(pipe)
    assert inside != first and model_fingerprint(pipe) == first and len(hashed) == 3  # restored bit-exactly
    apply_mask(pipe, mask)
    assert model_fingerprint(pipe) == inside
