import json

import pytest
from PIL import Image

from cadiff.cli import main


def _no_partials(folder):
    return not any(p.name.endswith(".partial") for p in folder.iterdir())


def test_generate_writes_grid_images_and_run_json(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["generate", "a red striped circle", "a blue star", "-n", "3", "--seed", "7", "--steps", "5",
                 "--out", str(out)]) == 0
    grid = Image.open(out / "grid.png")
    assert grid.width >= 3 * 96  # upscaled so a person can see it
    assert len(list((out / "images").glob("*.png"))) == 6
    record = json.loads((out / "run.json").read_text())
    assert record["settings"]["seeds"] == [7, 8, 9]
    assert record["settings"]["steps"] == 5 and record["settings"]["guidance"] == 4.0
    assert len(record["model"]["fingerprint"]) == 16 and record["versions"]["diffusers"]
    assert "grid.png" in capsys.readouterr().out


def test_existing_output_is_not_overwritten(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main(["generate", "a circle", "-n", "1", "--steps", "2", "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert (out / "keep.txt").read_text() == "mine"


@pytest.mark.parametrize("n", ["0", "-2"])
def test_non_positive_n_is_rejected(tmp_path, n, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["generate", "a circle", "-n", n, "--out", str(tmp_path / "run")])
    assert exc.value.code == 2
    assert "positive integer" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_bad_model_leaves_nothing_behind(tmp_path, capsys):
    assert main(["generate", "a circle", "--model", str(tmp_path / "nope"), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cadiff: error:") and "not found" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists() and _no_partials(tmp_path)


def test_output_under_a_file_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "file.txt").write_text("x")
    assert main(["generate", "a circle", "--out", str(tmp_path / "file.txt" / "run")]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err


def test_not_a_pipeline_folder(tmp_path, capsys):
    (tmp_path / "weights").mkdir()
    assert main(["generate", "a circle", "--model", str(tmp_path / "weights"), "--out", str(tmp_path / "r")]) == 2
    assert "no model_index.json" in capsys.readouterr().err
