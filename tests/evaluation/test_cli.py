"""`cadiff evaluate` end to end on a tiny pipeline folder: results, resume message, one-line errors."""

import json

from cadiff.cli import main


def test_evaluate_command_writes_and_refuses_to_mix(tiny_pipe, tiny_evaluator, tmp_path, capsys):
    model = tmp_path / "model"
    tiny_pipe.save_pretrained(model)
    args = ["evaluate", "--model", str(model), "--prompts", "shapes:star,blue", "--judge-weights", str(tiny_evaluator),
            "--steps", "2", "--device", "cpu", "--out", str(tmp_path / "r")]
    assert main(args + ["--metrics", "shapes"]) == 0
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert metrics["rows"] == 3 and metrics["prompts"]["source"] == "shapes:star,blue"
    assert metrics["metrics"]["shapes"]["per_concept"]["star"]["n_target"] == 3
    assert main(args + ["--metrics", "shapes", "--guidance", "2"]) == 2
    assert "holds another evaluation" in capsys.readouterr().err


def test_evaluate_errors_are_one_line(tiny_evaluator, tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("text,evaluation_seed\nhello,1\n")
    assert main(["evaluate", "--prompts", str(bad), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("cadiff: error:") and "no 'prompt' column" in err and "\n" not in err
    assert main(["evaluate", "--prompts", "shapes", "--mask", str(tmp_path / "none.safetensors"),
                 "--out", str(tmp_path / "r")]) == 2
    assert "mask file" in capsys.readouterr().err


def test_evaluate_with_a_cad_mask_records_its_hash(tiny_pipe, tiny_evaluator, tmp_path):
    import torch

    from cadiff.editing import Mask
    from cadiff.evaluation import file_sha256
    from cadiff.models import model_fingerprint

    model = tmp_path / "model"
    tiny_pipe.save_pretrained(model)
    name = next(n for n, _ in tiny_pipe.unet.named_parameters() if n.endswith("ff.net.2.weight"))
    shape = tuple(dict(tiny_pipe.unet.named_parameters())[name].shape)
    mask_file = tmp_path / "m.safetensors"
    Mask({name: torch.arange(0, 40, 3)}, {name: shape}, {"fingerprint": model_fingerprint(tiny_pipe)}).save(mask_file)
    common = ["evaluate", "--model", str(model), "--prompts", "shapes:heart,green", "--judge-weights",
              str(tiny_evaluator), "--steps", "2", "--device", "cpu", "--metrics", "shapes"]
    assert main(common + ["--out", str(tmp_path / "plain")]) == 0
    assert main(common + ["--mask", str(mask_file), "--out", str(tmp_path / "masked")]) == 0
    plain = json.loads((tmp_path / "plain" / "run.json").read_text())["identity"]
    masked = json.loads((tmp_path / "masked" / "run.json").read_text())["identity"]
    assert masked["edit"] == {"kind": "cad-mask", "file": str(mask_file), "sha256": file_sha256(mask_file),
                              "weights_zeroed": 14}
    assert plain["edit"] is None and masked["model"]["fingerprint"] != plain["model"]["fingerprint"]


def test_evaluate_says_which_sampling_settings_it_used(tiny_pipe, tiny_evaluator, tmp_path, capsys):
    model = tmp_path / "model"
    tiny_pipe.save_pretrained(model)
    args = ["evaluate", "--model", str(model), "--prompts", "shapes:star,blue", "--judge-weights", str(tiny_evaluator),
            "--metrics", "shapes", "--device", "cpu"]
    assert main(args + ["--steps", "2", "--out", str(tmp_path / "a")]) == 0
    out = capsys.readouterr().out
    assert "sampling: 2 steps, guidance 7.5 (unset ones: Stable Diffusion's defaults, since the model records none" in out
    assert main(args + ["--steps", "2", "--guidance", "3", "--out", str(tmp_path / "b")]) == 0
    assert "sampling: 2 steps, guidance 3\n" in capsys.readouterr().out


def test_evaluate_refuses_words_the_embedded_model_does_not_know(tmp_path, capsys):
    prompts = tmp_path / "imagenette.txt"
    prompts.write_text("a photo of a tench\n")
    assert main(["evaluate", "--prompts", str(prompts), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "unknown word 'photo'" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()
    assert main(["generate", "a teal dotted hexagon", "--out", str(tmp_path / "g")]) == 2
    assert "unknown word 'teal'" in capsys.readouterr().err and not (tmp_path / "g").exists()
