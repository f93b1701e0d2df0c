"""Mask files from elsewhere: an index outside its parameter or of a non-integer type is refused when the file is
read (it would wrap and zero other weights), and `cadiff apply` refuses a mask without a model fingerprint unless
--force."""

import pytest
import torch

from cadiff.cli import main
from cadiff.attribution.mask import Mask, write_with_header
from cadiff.models.loading import denoiser, model_fingerprint
from tiny_pipelines import tiny_sd


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A tiny saved pipeline, its fingerprint and one of its denoiser's parameters (name, numel)."""
    pipe = tiny_sd("sd2")
    folder = tmp_path_factory.mktemp("model") / "model"
    pipe.save_pretrained(folder)
    name, p = next((n, p) for n, p in denoiser(pipe).named_parameters() if p.ndim == 2)
    return folder, model_fingerprint(pipe), name, p.numel(), tuple(p.shape)


def _mask_file(path, name, shape, indices, metadata):
    write_with_header(path, {name: indices}, {"kind": "mask", **metadata, "shapes": {name: list(shape)}})
    return path


@pytest.mark.parametrize("bad", [-1, "numel"])
def test_an_index_outside_its_parameter_is_refused_on_reading(model, tmp_path, bad):
    _, fingerprint, name, numel, shape = model
    bad = numel if bad == "numel" else bad
    path = _mask_file(tmp_path / "m.safetensors", name, shape, torch.tensor([0, bad, 2]), {"fingerprint": fingerprint})
    with pytest.raises(ValueError) as exc:
        Mask.load(path)
    message = str(exc.value)
    assert str(path) in message and name in message and str(bad) in message and f"[0, {numel})" in message
    assert "\n" not in message


def test_float_indices_are_refused_on_reading(model, tmp_path):
    _, fingerprint, name, _, shape = model
    path = _mask_file(tmp_path / "m.safetensors", name, shape, torch.tensor([0.0, 1.5]), {"fingerprint": fingerprint})
    with pytest.raises(ValueError, match=rf"{name}.*float32.*integer"):
        Mask.load(path)


def test_a_good_mask_file_still_loads(model, tmp_path):
    _, fingerprint, name, numel, shape = model
    path = _mask_file(tmp_path / "m.safetensors", name, shape, torch.tensor([0, numel - 1], dtype=torch.int32),
                      {"fingerprint": fingerprint})
    mask = Mask.load(path)
    assert mask.indices[name].dtype == torch.int64 and mask.indices[name].tolist() == [0, numel - 1]


def test_apply_refuses_a_negative_index_before_loading_the_model(model, tmp_path, capsys):
    folder, fingerprint, name, _, shape = model
    path = _mask_file(tmp_path / "m.safetensors", name, shape, torch.tensor([-5]), {"fingerprint": fingerprint})
    code = main(["apply", str(path), "--model", str(folder), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("cadiff: error:") and err.count("\n") == 1 and "-5" in err and name in err
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))


def test_apply_refuses_a_mask_without_fingerprint_unless_forced(model, tmp_path, capsys):
    folder, _, name, _, shape = model
    path = _mask_file(tmp_path / "m.safetensors", name, shape, torch.tensor([0, 3]), {"method": "by hand"})
    code = main(["apply", str(path), "--model", str(folder), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "fingerprint" in err and "--force" in err
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))
    assert main(["apply", str(path), "--model", str(folder), "--force", "--out", str(tmp_path / "out")]) == 0
    assert "zeroed 2 weights" in capsys.readouterr().out and (tmp_path / "out" / "model_index.json").is_file()
