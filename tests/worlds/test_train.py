import json

import pytest
import torch

from cadiff.cli import main
from cadiff.worlds.shapes import load_evaluator
from cadiff.worlds.shapes.train import TrainConfig, train_shapes_model


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("train") / "shapes"
    train_shapes_model(out, TrainConfig.tiny())
    return out


def test_tiny_training_writes_a_stock_pipeline_evaluator_and_log(tiny_run):
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(str(tiny_run / "pipeline"))
    pipe.set_progress_bar_config(disable=True)
    img = pipe("a red circle", num_inference_steps=2, output_type="np", generator=torch.Generator().manual_seed(0))
    assert img.images.shape == (1, 32, 32, 3)
    log = json.loads((tiny_run / "train_log.json").read_text())
    assert set(log["phases"]) >= {"data", "evaluator", "vae", "unet"}
    assert log["config"]["seed"] == 0 and log["versions"]["torch"]
    assert all(len(log["phases"][p]["loss_curve"]) > 0 for p in ("evaluator", "vae", "unet"))
    assert pipe.vae.config.scaling_factor == pytest.approx(log["phases"]["vae"]["scaling_factor"])
    assert set(load_evaluator(tiny_run / "evaluator").predict(img.images)) == {"shape", "colour", "texture"}


def test_training_is_reproducible_from_the_seed(tiny_run, tmp_path):
    from safetensors.torch import load_file

    again = train_shapes_model(tmp_path / "again", TrainConfig.tiny())
    a = load_file(str(tiny_run / "pipeline" / "unet" / "diffusion_pytorch_model.safetensors"))
    b = load_file(str(again / "pipeline" / "unet" / "diffusion_pytorch_model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_cli_refuses_existing_output(tiny_run, capsys):
    assert main(["shapes", "train", "--tiny", "--out", str(tiny_run)]) == 2
    assert "already exists" in capsys.readouterr().err


@pytest.mark.parametrize("bad, says", [(["--device", "tpu9"], "unknown device"), (["--unet-batch", "0"], "positive"),
                                       (["--unet-steps", "-3"], "positive")])
def test_cli_refuses_bad_settings_before_writing_anything(bad, says, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["shapes", "train", "--tiny", "--out", str(tmp_path / "x"), *bad])
    assert exit_.value.code == 2 and says in capsys.readouterr().err and not (tmp_path / "x").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without CUDA")
def test_cli_says_when_there_is_no_cuda(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["shapes", "train", "--tiny", "--device", "cuda", "--out", str(tmp_path / "x")])
    assert "no CUDA device" in capsys.readouterr().err and not (tmp_path / "x").exists()


def test_a_model_that_never_saw_a_concept(tmp_path, capsys):
    from cadiff.worlds.shapes import render_random

    batch = render_random(200, seed=0)
    rest = batch.without(["circle", "red"])
    assert 0 < len(rest) < len(batch) and rest.images.shape[0] == len(rest.shapes) == len(rest.radii)
    assert 0 not in rest.shapes.tolist() and 0 not in rest.colours.tolist()  # circle and red are index 0
    with pytest.raises(ValueError, match="unknown value"):
        batch.without(["circel"])
    assert TrainConfig(exclude="circle").exclude == ("circle",)
    with pytest.raises(ValueError, match="unknown value"):
        TrainConfig(exclude=("circel",))
    with pytest.raises(ValueError, match="leaves no image"):
        TrainConfig(exclude=("solid", "striped", "outlined"))
    out = tmp_path / "no-circle"
    assert main(["shapes", "train", "--tiny", "--exclude", "circle", "--out", str(out)]) == 0
    log = json.loads((out / "train_log.json").read_text())
    assert log["config"]["exclude"] == ["circle"] and 0 < log["phases"]["data"]["denoiser_images"] < 96
    assert main(["shapes", "train", "--tiny", "--denoiser", "dit", "--exclude", "circle", "--out",
                 str(tmp_path / "x")]) == 2
    assert "--exclude trains the U-Net only" in capsys.readouterr().err and not (tmp_path / "x").exists()
