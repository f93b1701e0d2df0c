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
                 "--hookpoints", "mid_block.attentions.0", "--at-steps", "first,last", "--out", acts]) == 0
    assert main(["sae", "train", acts, "--k", "2", "--batch-size", "16", "--out", sae]) == 0
    cfg = json.loads((tmp_path / "sae" / "cfg.json").read_text())
    assert cfg["metadata"]["hook_name"] == "mid_block.attentions.0" and cfg["metadata"]["steps"] == [0, 2]
    assert "explained_variance" in json.loads((tmp_path / "sae" / "metrics.json").read_text())
    assert main(["sae", "inspect", acts, "--sae", sae, "--out", insp]) == 0
    assert (tmp_path / "insp" / "cards.png").is_file() and (tmp_path / "insp" / "concepts.json").is_file()
    assert main(["sae", "steer", "a red circle", "--model", model_dir, "--sae", sae, "--latents", "0",
                 "--mode", "spatial", "--at-steps", "early", "-n", "2", "--out", str(tmp_path / "steer")]) == 0
    assert "spatial_success" in json.loads((tmp_path / "steer" / "metrics.json").read_text())


def test_bad_input_is_one_line(model_dir, tmp_path, capsys):
    code = main(["sae", "collect", "a red circle", "--model", model_dir, "--hookpoints", "down_blocks.2.attentions.1",
                 "--out", str(tmp_path / "a")])
    assert code == 2 and "unknown hookpoint 'down_blocks.2.attentions.1'" in capsys.readouterr().err
    code = main(["sae", "collect", "a red circle", "--model", model_dir, "--at-steps", "9",
                 "--out", str(tmp_path / "b")])
    assert code == 2 and "outside the schedule of 3 steps" in capsys.readouterr().err
    assert main(["sae", "train", str(tmp_path), "--out", str(tmp_path / "c")]) == 2
    assert "not an activation folder" in capsys.readouterr().err


def test_train_on_one_shard_holds_out_images_and_ends_its_bar_full(model_dir, tmp_path, capsys, monkeypatch):
    import cadiff.cli.sae

    bars = []
    real = cadiff.cli.sae.tqdm

    def recording(*args, **kwargs):
        bars.append(real(*args, **kwargs))
        return bars[-1]

    acts = str(tmp_path / "acts")
    assert main(["sae", "collect", "--model", model_dir, "--random-prompts", "16", "--hookpoints",
                 "mid_block.attentions.0", "--at-steps", "first", "--out", acts]) == 0  # one shard of 16
    monkeypatch.setattr(cadiff.cli.sae, "tqdm", recording)
    assert main(["sae", "train", acts, "--k", "2", "--batch-size", "16", "--out", str(tmp_path / "sae")]) == 0
    metrics = json.loads((tmp_path / "sae" / "metrics.json").read_text())
    assert metrics["eval_shards"] == [[0, 14, 16]] and metrics["train_tokens"] > 0  # the last 2 of 16 images
    assert metrics["eval_tokens"] == 2 * metrics["train_tokens"] // 14
    assert bars[-1].n == bars[-1].total == metrics["train_tokens"]


def test_train_on_a_single_image_is_refused_before_training(model_dir, tmp_path, capsys):
    acts = str(tmp_path / "acts")
    assert main(["sae", "collect", "a red circle", "--model", model_dir, "--hookpoints", "mid_block.attentions.0",
                 "--at-steps", "first", "--out", acts]) == 0
    capsys.readouterr()
    assert main(["sae", "train", acts, "--out", str(tmp_path / "sae")]) == 2
    err = capsys.readouterr().err
    assert "holds 1 image; training needs at least 2" in err and "train:" not in err
    assert not (tmp_path / "sae").exists()
