"""The shipped MMDiT sibling of the embedded model: `--model embedded:dit`."""

from __future__ import annotations

import cadiff
from cadiff.cli import main
from cadiff.models.loading import embedded_model_path, sampling_defaults
from cadiff.worlds import world_of


def _size(folder) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def test_embedded_dit_is_a_stock_sd3_pipeline_of_the_shapes_world():
    from diffusers import StableDiffusion3Pipeline

    pipe = cadiff.load_pipeline("embedded:dit")
    assert type(pipe).__name__ == "StableDiffusion3Pipeline" and pipe.text_encoder_3 is None
    assert world_of(pipe).name == "shapes"
    assert sampling_defaults(pipe) == {"num_inference_steps": 25, "guidance_scale": 4.0}
    stock = StableDiffusion3Pipeline.from_pretrained(str(embedded_model_path("dit")), text_encoder_3=None,
                                                     tokenizer_3=None)
    assert cadiff.model_fingerprint(stock) == cadiff.model_fingerprint(pipe)
    images = cadiff.generate(pipe, ["a red circle"], seeds=[0], steps=4)
    assert images.shape == (1, 32, 32, 3) and images.dtype == "uint8"


def test_the_two_embedded_models_stay_under_40_mb():
    unet, dit = embedded_model_path("unet"), embedded_model_path("dit")
    assert _size(unet.parent) < 40e6  # both pipelines and the evaluator
    assert _size(dit) > _size(unet) / 4  # really there, not a pointer


def test_cli_takes_embedded_dit(tmp_path):
    out = tmp_path / "gen"
    assert main(["generate", "a blue star", "-n", "1", "--steps", "3", "--model", "embedded:dit", "--out",
                 str(out)]) == 0
    record = (out / "run.json").read_text()
    assert '"embedded:dit"' in record
