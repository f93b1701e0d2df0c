"""`--settings RUN/run.json` replays a run: the recorded settings (concepts, method, every setting) are the
defaults, flags given change them; the replayed erase makes the same mask."""

import json

import torch

from cadiff.cli import main
from cadiff.attribution.mask import Mask


def _erase(shapes_like, out, *extra):
    return main(["erase", "circle", "--method", "cad", "--model", str(shapes_like), "--components", "attn",
                 "--scope", "matrix", "--ratio", "0.05", "--seeds", "1", "--no-export", "--out", str(out), *extra])


def _same(a: Mask, b: Mask) -> bool:
    return a.indices.keys() == b.indices.keys() and all(torch.equal(a.indices[k], b.indices[k]) for k in a.indices)


def test_a_replayed_erase_makes_the_same_mask_and_a_flag_changes_it(shapes_like, tmp_path):
    assert _erase(shapes_like, tmp_path / "a") == 0
    recorded = tmp_path / "a" / "run.json"
    assert main(["erase", "--settings", str(recorded), "--out", str(tmp_path / "b")]) == 0
    first, again = Mask.load(tmp_path / "a" / "mask.safetensors"), Mask.load(tmp_path / "b" / "mask.safetensors")
    assert _same(first, again) and len(first) > 0
    replayed = json.loads((tmp_path / "b" / "run.json").read_text())["settings"]
    assert replayed["concepts"] == ["circle"] and replayed["ratio"] == 0.05 and replayed["method"] == "cad"

    assert main(["erase", "--settings", str(recorded), "--ratio", "0.1", "--out", str(tmp_path / "c")]) == 0
    assert len(Mask.load(tmp_path / "c" / "mask.safetensors")) > len(first)


def test_settings_of_another_command_or_no_run_are_refused_in_one_line(shapes_like, tmp_path, capsys):
    assert _erase(shapes_like, tmp_path / "a") == 0
    assert main(["attribute", "--settings", str(tmp_path / "a" / "run.json"), "--out", str(tmp_path / "d")]) == 2
    assert "a run of 'cadiff erase', not of 'cadiff attribute'" in capsys.readouterr().err
    assert main(["erase", "--settings", str(tmp_path / "nothing.json"), "--out", str(tmp_path / "e")]) == 2
    assert "no such file" in capsys.readouterr().err and not (tmp_path / "e").exists()


def test_a_replayed_generate_makes_the_same_images(shapes_like, tmp_path):
    assert main(["generate", "a red circle", "a blue star", "-n", "2", "--seed", "5", "--model", str(shapes_like),
                 "--out", str(tmp_path / "a")]) == 0
    assert main(["generate", "--settings", str(tmp_path / "a" / "run.json"), "--out", str(tmp_path / "b")]) == 0
    first, again = sorted((tmp_path / "a" / "images").iterdir()), sorted((tmp_path / "b" / "images").iterdir())
    assert [p.name for p in first] == [p.name for p in again] and len(first) == 4
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(first, again))
