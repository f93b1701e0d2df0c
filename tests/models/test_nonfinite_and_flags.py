"""Non-finite weights, scores, images and metric values are refused naming them; so are non-finite or negative
guidance, non-positive steps and devices cadiff cannot run on."""

import math

import numpy as np
import pytest
import torch

import cadiff
from cadiff.attribution import Attribution
from cadiff.cli import main
from cadiff.evaluation.metrics import Metric
from cadiff.evaluation.prompts import PromptRow
from cadiff.attribution.mask import write_with_header
from cadiff.models import model_fingerprint
from cadiff.models.loading import mark_model, resolve_sampling
from tiny_pipelines import tiny_sd

DAMAGED = "down_blocks.0.resnets.0.conv1.weight"


def _damage(pipe, value=float("nan"), count=3):
    with torch.no_grad():
        pipe.unet.get_parameter(DAMAGED).view(-1)[:count] = value
    return pipe


@pytest.fixture()
def pipe():
    return tiny_sd("sd1")


@pytest.fixture(scope="module")
def damaged_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("damaged") / "model"
    _damage(tiny_sd("sd1")).save_pretrained(folder)
    return folder


def _one_line_error(capsys):
    err = capsys.readouterr().err
    assert err.startswith("cadiff: error:") and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err


# weights


@pytest.mark.parametrize("value, what", [(float("nan"), "3 NaN values"), (float("inf"), "3 infinite values")])
def test_fingerprint_refuses_non_finite_denoiser_weights(pipe, value, what):
    with pytest.raises(ValueError, match=rf"denoiser's weight {DAMAGED} has {what}: the model file is damaged"):
        model_fingerprint(_damage(pipe, value))


def test_fingerprint_counts_every_damaged_weight(pipe):
    _damage(pipe)
    with torch.no_grad():
        pipe.unet.conv_out.weight.view(-1)[0] = -float("inf")
    with pytest.raises(ValueError, match=rf"{DAMAGED} has 3 NaN values \(and 1 more: conv_out.weight\)"):
        model_fingerprint(pipe)


@pytest.mark.parametrize("command", [["attribute", "a circle"],
                                     ["erase", "a circle", "--method", "cad", "--ratio", "0.1"],
                                     ["generate", "a circle", "-n", "1"]])
def test_cli_refuses_a_damaged_model_before_any_work(damaged_model, tmp_path, capsys, command):
    code = main([*command, "--model", str(damaged_model), "--steps", "2", "--out", str(tmp_path / "run")])
    assert code == 2
    assert DAMAGED in _one_line_error(capsys)
    assert not (tmp_path / "run").exists() and list(tmp_path.iterdir()) == []


def test_generate_refuses_damaged_weights_before_sampling(pipe, monkeypatch):
    _damage(pipe)
    monkeypatch.setattr(type(pipe), "__call__", lambda *a, **k: pytest.fail("sampled with damaged weights"))
    with pytest.raises(ValueError, match=DAMAGED):
        cadiff.generate(pipe, ["a circle"], seeds=[0], steps=2)


def test_generate_names_a_damaged_text_encoder(pipe):
    name = next(n for n, _ in pipe.text_encoder.named_parameters() if n.endswith("final_layer_norm.weight"))
    with torch.no_grad():
        pipe.text_encoder.get_parameter(name).fill_(float("nan"))
    with pytest.raises(ValueError, match=f"the text_encoder's weight {name} has 16 NaN"):
        cadiff.generate(pipe, ["a circle"], seeds=[0], steps=2)


# images


def test_generate_refuses_non_finite_images_naming_prompt_and_seed(pipe, monkeypatch):
    stock = type(pipe).__call__

    def one_nan(self, *args, **kwargs):
        out = stock(self, *args, **kwargs)
        out.images[1, 0, 0, 0] = np.nan
        return out

    monkeypatch.setattr(type(pipe), "__call__", one_nan)
    with pytest.raises(ValueError, match=r"the image of 'a star' \(seed 8\) has 1 NaN value among its pixels"):
        cadiff.generate(pipe, ["a circle", "a star"], seeds=[7, 8], steps=2)


# scores


def test_attribution_refuses_non_finite_scores():
    scores = {"a.weight": torch.zeros(2, 3), "b.weight": torch.tensor([1.0, float("nan"), float("inf")])}
    with pytest.raises(ValueError, match="the attribution's score of b.weight has 1 NaN and 1 infinite value"):
        Attribution(scores, {"concepts": ["circle"]})


def test_attribution_file_with_non_finite_scores_is_refused(tmp_path):
    path = write_with_header(tmp_path / "x.attr.safetensors", {"w": torch.tensor([float("nan"), 1.0])},
                             {"kind": "attribution", "concepts": ["circle"]})
    with pytest.raises(ValueError, match="score of w has 1 NaN value"):
        Attribution.load(path)


# metrics


class Broken(Metric):
    name = "broken"

    def score(self, images, rows):
        return {"broken_value": [1.0, math.nan], "broken_label": ["x", "y"]}

    def summarize(self, table, images):
        return {"n": 2, "per_class": {"circle": {"mean": math.inf}}}


def test_metric_scores_must_be_finite():
    rows = [PromptRow(0, "a circle", 3), PromptRow(1, "a star", 4)]
    with pytest.raises(ValueError, match=r"metric 'broken' computed broken_value = nan for the image of 'a star' "
                                         r"\(seed 4\)"):
        Broken().score(np.zeros((2, 8, 8, 3), np.uint8), rows)


def test_metric_summaries_must_be_finite():
    with pytest.raises(ValueError, match=r"metric 'broken' computed per_class.circle.mean = inf"):
        Broken().summarize([], None)


# guidance and steps


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "-5"])
def test_cli_refuses_non_finite_or_negative_guidance(tmp_path, capsys, value):
    with pytest.raises(SystemExit) as exc:
        main(["generate", "a circle", f"--guidance={value}", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "--guidance: must be a finite number >= 0" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -5.0])
def test_api_refuses_non_finite_or_negative_guidance(pipe, monkeypatch, value):
    monkeypatch.setattr(type(pipe), "__call__", lambda *a, **k: pytest.fail("sampled with a bad guidance"))
    with pytest.raises(ValueError, match=f"guidance must be a finite number >= 0, got {value}"):
        cadiff.generate(pipe, ["a circle"], seeds=[0], steps=2, guidance=value)


@pytest.mark.parametrize("steps", [0, -3, 2.5])
def test_api_refuses_steps_that_are_not_positive_integers(pipe, steps):
    with pytest.raises(ValueError, match=f"steps must be a positive integer, got {steps}"):
        resolve_sampling(pipe, steps, 4.0)


def test_model_recording_a_bad_guidance_is_refused(pipe):
    mark_model(pipe, {"guidance_scale": float("nan"), "num_inference_steps": 2})
    with pytest.raises(ValueError, match="the model's recorded guidance_scale must be a finite number >= 0"):
        resolve_sampling(pipe)
    assert resolve_sampling(pipe, guidance=0.0) == (2, 0.0)


def test_attribute_refuses_nan_guidance_before_any_work(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:  # the flag's type, from the config field's bounds, refuses it
        main(["attribute", "a circle", "--guidance", "nan", "--steps", "2", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "argument --guidance: must be at least 0, got nan" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err and not (tmp_path / "run").exists()


# devices


@pytest.mark.parametrize("device, message", [("meta", "cadiff cannot run on device 'meta'"),
                                             ("xpu", "cadiff cannot run on device 'xpu'"),
                                             ("mps", "no MPS device"),
                                             ("cuda:7", "no CUDA device 'cuda:7'"),
                                             ("gpu", "unknown device 'gpu'")])
def test_cli_refuses_devices_it_cannot_use(tmp_path, capsys, monkeypatch, device, message):
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(SystemExit) as exc:
        main(["generate", "a circle", "--device", device, "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("cadiff generate: error: argument --device:") and message in last and "--device cpu" in last
    assert not (tmp_path / "run").exists()


def test_available_mps_and_cpu_are_accepted(monkeypatch):
    from cadiff.cli.common import device

    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert device("mps") == "mps" and device("cpu") == "cpu"
