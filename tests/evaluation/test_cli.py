"""`cadiff evaluate` end to end on a tiny pipeline folder: results, resume message, one-line errors."""

import json

from cadiff.cli import main


def test_evaluate_command_writes_and_refuses_to_mix(tiny_pipe, tiny_evaluator, tmp_path, capsys):
    model = tmp_path / "model"
    tiny_pipe.save_pretrained(model)
    args = ["evaluate", "--model", str(model), "--prompts", "shapes:star,blue", "--evaluator", str(tiny_evaluator),
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
