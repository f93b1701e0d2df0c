"""`cadiff sae ...` end to end on a tiny SD 1.x-structured pipeline saved to disk, and its one-line errors."""

from __future__ import annotations

import json

import pytest

from cadiff.cli import main


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, sd1):
    path = tmp_path_factory.mktemp("model") / "pipe"
    sd1.save_pretrained(path)
    (path / "cadiff.json").write_text(json.dumps({"world": "shapes", "num_inference_steps": 3, "guidance_scale": 4.0}))
    return str(path)


def test_collect_train_inspect_steer(model_dir, tmp_path, capsys):
    acts, sae, insp = str(tmp_path / "acts"), str(tmp_path / "sae"), str(tmp_path / "insp")
    assert main(["sae", "collect", "--model", model_dir, "--random-prompts", "24", "--shard-size", "8",
                 "--hookpoints", "mid_block.attentions.0", "--capture-steps", "first,last", "--out", acts]) == 0
    assert main(["sae", "train", acts, "--k", "2", "--batch-size", "16", "--out", sae]) == 0
    cfg = json.loads((tmp_path / "sae" / "cfg.json").read_text())
    assert cfg["metadata"]["hook_name"] == "mid_block.attentions.0" and cfg["metadata"]["steps"] == [0, 2]
    assert "explained_variance" in json.loads((tmp_path / "sae" / "metrics.json").read_text())
    assert main(["sae", "inspect", acts, "--sae", sae, "--out", insp]) == 0
    assert (tmp_path / "insp" / "cards.png").is_file() and (tmp_path / "insp" / "concepts.json").is_file()
    assert main(["sae", "steer", "a red circle", "--model", model_dir, "--sae", sae, "--latents", "0",
                 "--mode", "spatial", "--window", "early", "-n", "2", "--out", str(tmp_path / "steer")]) == 0
    assert "spatial_success" in json.loads((tmp_path / "steer" / "metrics.json").read_text())


def test_bad_input_is_one_line(model_dir, tmp_path, capsys):
    code = main(["sae", "collect", "a red circle", "--model", model_dir, "--hookpoints", "down_blocks.2.attentions.1",
                 "--out", str(tmp_path / "a")])
    assert code == 2 and "unknown hookpoint 'down_blocks.2.attentions.1'" in capsys.readouterr().err
    code = main(["sae", "collect", "a red circle", "--model", model_dir, "--capture-steps", "9",
                 "--out", str(tmp_path / "b")])
    assert code == 2 and "outside the schedule of 3 steps" in capsys.readouterr().err
    assert main(["sae", "train", str(tmp_path), "--out", str(tmp_path / "c")]) == 2
    assert "not an activation folder" in capsys.readouterr().err
