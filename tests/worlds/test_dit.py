"""The shapes MMDiT recipe: a stock StableDiffusion3Pipeline comes out; training's one-token stand-in for the
pipeline's 256 zero T5 tokens is exact."""

import json

import pytest
import torch

from cadiff.models.loading import model_info
from cadiff.worlds.shapes import load_evaluator
from cadiff.worlds.shapes.dit import (T5_TOKENS, DiTConfig, DiTTrainConfig, RepeatedLastToken, shapes_dit_pipeline,
                                      train_shapes_dit)


@pytest.fixture(scope="module")
def tiny_dit(tmp_path_factory):
    out = tmp_path_factory.mktemp("dit") / "shapes-dit"
    train_shapes_dit(out, DiTTrainConfig.tiny())
    return out


def test_one_weighted_token_is_exactly_the_pipelines_256_zero_tokens():
    torch.manual_seed(0)
    pipe = shapes_dit_pipeline(DiTConfig.tiny())
    net = pipe.transformer.eval()
    with torch.no_grad():
        for p in net.parameters():  # random non-zero biases, so the zero tokens carry a value
            p.add_(0.1 * torch.randn_like(p))
    full, _, pooled, _ = pipe.encode_prompt(["a red circle", "a star"], None, None, do_classifier_free_guidance=False)
    assert full.shape[1] == 8 + T5_TOKENS and full[:, 8:].abs().max() == 0
    latents, t = torch.randn(2, 4, 16, 16), torch.tensor([300.0, 800.0])
    net, full, pooled, latents, t = (x.double() for x in (net, full, pooled, latents, t))  # see the tolerance below
    with torch.no_grad():
        reference = net(hidden_states=latents, timestep=t, encoder_hidden_states=full, pooled_projections=pooled,
                        return_dict=False)[0]
        net.set_attn_processor(RepeatedLastToken(T5_TOKENS))
        packed = net(hidden_states=latents, timestep=t, encoder_hidden_states=full[:, :9], pooled_projections=pooled,
                     return_dict=False)[0]
    # exact in real arithmetic; fp64 leaves ~1e3 * eps64 * max|out| of rounding (through the layers' reductions)
    torch.testing.assert_close(packed, reference, rtol=0,
                               atol=1e3 * torch.finfo(torch.float64).eps * float(reference.abs().max()))
    net.set_attn_processor(RepeatedLastToken(1))
    with torch.no_grad():
        one = net(hidden_states=latents, timestep=t, encoder_hidden_states=full[:, :9], pooled_projections=pooled,
                  return_dict=False)[0]
    assert (one - reference).abs().max() > 1e-3  # the weight is what makes it exact


def test_tiny_dit_training_writes_a_stock_sd3_pipeline_the_evaluator_and_a_log(tiny_dit):
    from diffusers import StableDiffusion3Pipeline

    pipe = StableDiffusion3Pipeline.from_pretrained(str(tiny_dit / "pipeline"), text_encoder_3=None, tokenizer_3=None)
    pipe.set_progress_bar_config(disable=True)
    img = pipe("a red circle", num_inference_steps=2, output_type="np", generator=torch.Generator().manual_seed(0))
    assert img.images.shape == (1, 32, 32, 3)
    assert type(pipe.transformer.attn_processors["transformer_blocks.0.attn.processor"]).__name__ == \
        "JointAttnProcessor2_0"
    log = json.loads((tiny_dit / "train_log.json").read_text())
    assert set(log["phases"]) >= {"data", "latents", "dit", "total"} and len(log["phases"]["dit"]["loss_curve"]) == 3
    assert log["config"]["model"]["layers"] == 2 and log["versions"]["torch"]
    assert set(load_evaluator(tiny_dit / "evaluator").predict(img.images)) == {"shape", "colour", "texture"}


def test_dit_training_snapshots_the_ema_model_along_the_way(tiny_dit):
    from diffusers import StableDiffusion3Pipeline
    from safetensors.torch import load_file

    assert sorted(p.name for p in (tiny_dit / "snapshots").iterdir()) == ["step-2"]  # every 2 of 3 steps, not the end
    snapshot = StableDiffusion3Pipeline.from_pretrained(str(tiny_dit / "snapshots" / "step-2"), text_encoder_3=None,
                                                        tokenizer_3=None)
    name = "transformer/diffusion_pytorch_model.safetensors"
    early, final = load_file(str(tiny_dit / "snapshots" / "step-2" / name)), load_file(str(tiny_dit / "pipeline" / name))
    assert early.keys() == final.keys() and any(not torch.equal(early[k], final[k]) for k in early)
    assert model_info(snapshot)["world"] == "shapes"


def test_dit_training_is_reproducible_from_the_seed(tiny_dit, tmp_path):
    from safetensors.torch import load_file

    again = train_shapes_dit(tmp_path / "again", DiTTrainConfig.tiny())
    name = "transformer/diffusion_pytorch_model.safetensors"
    a, b = load_file(str(tiny_dit / "pipeline" / name)), load_file(str(again / "pipeline" / name))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_cadiff_loads_the_dit_folder_as_an_sd3_model_of_the_shapes_world(tiny_dit):
    import cadiff
    from cadiff.adapters import adapter_for
    from cadiff.worlds import world_of

    pipe = cadiff.load_pipeline(str(tiny_dit / "pipeline"))
    assert adapter_for(pipe.transformer).name == "sd3" and world_of(pipe) is not None


def test_cadiff_shapes_train_dit(tmp_path, capsys):
    from cadiff.cli import main

    out = tmp_path / "dit"
    assert main(["shapes", "train", "--denoiser", "dit", "--tiny", "--steps", "2", "--out", str(out)]) == 0
    assert json.loads((out / "train_log.json").read_text())["config"]["steps"] == 2
    assert (out / "pipeline" / "transformer" / "config.json").is_file()
    assert main(["shapes", "train", "--denoiser", "dit", "--tiny", "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
