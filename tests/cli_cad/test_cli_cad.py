"""`cadiff attribute | erase | amplify | apply` on a tiny saved pipeline: happy paths and one-line errors."""

import json

import numpy as np
import pytest
from PIL import Image

from cadiff.attribution import Attribution
from cadiff.cli import main
from tiny_pipelines import tiny_sd

FAST = ["--steps", "2", "--seeds", "1", "--guidance", "4"]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    tiny_sd("sd2").save_pretrained(root / "a")
    tiny_sd("sd2", seed=1).save_pretrained(root / "b")
    return root


def run(argv, capsys):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_attribute_erase_apply_happy_path(models, tmp_path, capsys):
    code, out, _ = run(["attribute", "a circle", "a red square", "--preserve", "a star", "--model", models / "a",
                        "--out", tmp_path / "attr", *FAST], capsys)
    assert code == 0, out
    for name in ("a_circle", "a_red_square"):
        assert (tmp_path / "attr" / f"{name}.attr.safetensors").is_file()
        assert (tmp_path / "attr" / f"{name}.attr.png").is_file()
    assert "a circle" in json.loads((tmp_path / "attr" / "metrics.json").read_text())

    code, out, err = run(["erase", "a circle", "--method", "cad", "--preserve", "a star", "--preserve-rule", "guard",
                          "--ratio", "0.25", "--model", models / "a", "--out", tmp_path / "erase", *FAST], capsys)
    assert code == 0, err
    run_dir = tmp_path / "erase"
    for f in ("run.json", "mask.safetensors", "grid.png", "pipeline/model_index.json", "a_circle.attr.safetensors"):
        assert (run_dir / f).exists(), f
    record = json.loads((run_dir / "run.json").read_text())
    assert record["edit"]["zeroed"] > 0 and record["settings"]["ratio"] == 0.25
    assert Attribution.load(run_dir / "a_circle.attr.safetensors").metadata["preserve_rule"] == "guard"

    code, out, err = run(["apply", run_dir / "mask.safetensors", "--model", models / "a", "--out", tmp_path / "applied"],
                         capsys)
    assert code == 0, err
    a = (run_dir / "pipeline/unet/diffusion_pytorch_model.safetensors").read_bytes()
    b = (tmp_path / "applied/unet/diffusion_pytorch_model.safetensors").read_bytes()
    assert a == b  # the same edit, put on the original model from the mask file alone

    code, out, err = run(["apply", run_dir / "mask.safetensors", "--model", models / "a", "--fill", "resample",
                          "--out", tmp_path / "resampled"], capsys)
    assert code == 0 and "refilled from their rows" in out, err
    info = json.loads((tmp_path / "resampled" / "cadiff_edit.json").read_text())
    assert info["fill"] == "resample" and info["zeroed"] == record["edit"]["zeroed"]
    assert (tmp_path / "resampled/unet/diffusion_pytorch_model.safetensors").read_bytes() != b


def test_erase_in_rounds_keeps_an_applicable_mask(models, tmp_path, capsys):
    code, _, err = run(["erase", "a circle", "--method", "cad", "--ratio", "0.1", "--rounds", "2", "--no-export",
                        "--model", models / "a", "--at-steps", "0", "--out", tmp_path / "r2", *FAST], capsys)
    assert code == 0, err
    assert (tmp_path / "r2" / "a_circle.round2.attr.safetensors").is_file()
    assert Attribution.load(tmp_path / "r2" / "a_circle.round2.attr.safetensors").metadata["at_steps"] == [0]
    assert json.loads((tmp_path / "r2" / "run.json").read_text())["settings"]["rounds"] == 2
    code, _, err = run(["apply", tmp_path / "r2" / "mask.safetensors", "--model", models / "a",
                        "--out", tmp_path / "applied"], capsys)
    assert code == 0, err  # the union of both rounds addresses the original model
    code, _, err = run(["erase", "a circle", "--method", "prune", "--rounds", "2", "--model", models / "a",
                        "--out", tmp_path / "bad", *FAST], capsys)
    assert code == 2 and "--rounds" in err and not (tmp_path / "bad").exists()


def test_amplify_with_image_folder(models, tmp_path, capsys):
    (tmp_path / "imgs").mkdir()
    for i in range(2):
        Image.fromarray(np.full((16, 16, 3), 100 + 50 * i, np.uint8)).save(tmp_path / "imgs" / f"{i}.png")
    code, _, err = run(["amplify", "a circle", "--images", tmp_path / "imgs", "--ratio", "0.25", "--no-export",
                        "--model", models / "a", "--out", tmp_path / "amp", *FAST], capsys)
    assert code == 0, err
    assert (tmp_path / "amp/mask.safetensors").is_file() and not (tmp_path / "amp/pipeline").exists()


@pytest.mark.parametrize("extra, message", [
    (["a teal circle"], "unknown word 'teal'"),
    (["a circle", "--components", "no_such_weight"], "selects no parameter"),
    (["a circle", "--ratio", "0.001"], "is empty"),
    (["a circle", "--at-steps", "soon"], "cannot read step 'soon'"),
    (["a circle", "--preserve-rule", "guard"], "needs concepts to keep"),
    (["a circle", "--preserve-others"], "needs the embedded shapes model"),
    (["a circle", "--method", "nonsense"], None),
])
def test_erase_bad_inputs(models, tmp_path, capsys, extra, message):
    if message is None:
        with pytest.raises(SystemExit):
            main(["erase", *extra, "--out", str(tmp_path / "x")])
        return
    code, _, err = run(["erase", *extra, "--method", "cad", "--model", models / "a", "--out", tmp_path / "x", *FAST],
                       capsys)
    assert code == 2 and message in err and err.count("\n") == 1
    assert not (tmp_path / "x").exists() and not list(tmp_path.glob(".x*"))  # nothing half-written


def test_ratio_out_of_range_is_refused(models, tmp_path, capsys):
    for bad in ("0", "1.5", "-0.2"):
        with pytest.raises(SystemExit) as exc:
            main(["erase", "a circle", "--method", "cad", "--ratio", bad, "--model", str(models / "a"),
                  "--out", str(tmp_path / "x")])
        assert exc.value.code == 2
        assert "must be in (0, 1]" in capsys.readouterr().err


def test_other_model_empty_folder_existing_output(models, tmp_path, capsys):
    code, _, err = run(["erase", "a circle", "--method", "cad", "--ratio", "0.25", "--no-export", "--model",
                        models / "a", "--out", tmp_path / "e", *FAST], capsys)
    assert code == 0, err
    code, _, err = run(["apply", tmp_path / "e/mask.safetensors", "--model", models / "b", "--out", tmp_path / "o"],
                       capsys)
    assert code == 2 and "was made with model" in err and not (tmp_path / "o").exists()
    (tmp_path / "empty").mkdir()
    code, _, err = run(["amplify", "a circle", "--images", tmp_path / "empty", "--model", models / "a",
                        "--out", tmp_path / "o", *FAST], capsys)
    assert code == 2 and "holds no images" in err
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "x.png").write_bytes(b"junk")
    code, _, err = run(["amplify", "a circle", "--images", tmp_path / "junk", "--model", models / "a",
                        "--out", tmp_path / "o", *FAST], capsys)
    assert code == 2 and "cannot read image" in err
    code, _, err = run(["erase", "a circle", "--model", models / "a", "--out", tmp_path / "e", *FAST], capsys)
    assert code == 2 and "already exists" in err
    code, _, err = run(["apply", tmp_path / "missing.safetensors", "--model", models / "a", "--out", tmp_path / "o"],
                       capsys)
    assert code == 2 and "not found" in err


def test_baseline_method_dispatch(models, tmp_path, capsys):
    code, _, err = run(["erase", "a circle", "--method", "esd", "--model", models / "a", "--out", tmp_path / "b",
                        *FAST], capsys)
    assert code == 2 and "--seeds: not an option of --method esd; --method cad or prune or cadtrain or calibrated takes it" in err
    assert "(--method cad --help lists its flags)" in err and err.count("\n") == 1
    for flags, words in ((["--rounds", "2"], "--rounds: not an option"), (["--preserve", "a star"], "no concepts to keep"),
                         (["--ratio", "0.1"], "--ratio: not an option"),
                         (["--preserve-others"], "no concepts to keep; drop --preserve-others")):
        code, _, err = run(["erase", "a circle", "--method", "esd", *flags, "--model", models / "a",
                            "--out", tmp_path / "b"], capsys)
        assert code == 2 and words in err, err
    assert not (tmp_path / "b").exists()
    code, _, err = run(["erase", "a circle", "--method", "esd", "--iterations", "1", "--steps", "2", "--no-export",
                        "--model", models / "a", "--out", tmp_path / "b"], capsys)
    assert code == 0, err
    record = json.loads((tmp_path / "b" / "run.json").read_text())
    assert record["edit"]["method"] == "esd" and record["edit"]["iterations"] == 1
    assert record["settings"]["iterations"] == 1 and "ratio" not in record["settings"]


@pytest.mark.parametrize("argv, words", [
    (["erase", ""], "is empty"),
    (["erase", "   "], "is empty"),
    (["erase", "a circle", "--preserve", "a star", "a  star"], "given twice"),
    (["erase", "a circle", "a circle"], "given twice"),
    (["erase", "a circle", "--method", "cad", "--preserve", "a  circle"], "both a target and a concept to keep"),
    (["erase", "a circle", "--method", "cad", "--base-prompt", "a circle"], "is the base prompt"),
    (["attribute", "a star", "--preserve", "a circle", "--base-prompt", "a  circle"], "is the base prompt"),
    (["amplify", "a circle", "--preserve", "a circle"], "both a target and a concept to keep"),
])
def test_meaningless_concepts_are_refused_before_any_model_work(models, tmp_path, capsys, monkeypatch, argv, words):
    from cadiff.attribution.objectives import OBJECTIVES

    def no_work(*a, **k):
        raise AssertionError("attribution ran")

    for objective in OBJECTIVES.values():
        monkeypatch.setattr(objective, "samples", no_work)
    code, _, err = run([*argv, "--model", models / "a", "--out", tmp_path / "run", *FAST], capsys)
    assert code == 2 and words in err and len(err.strip().splitlines()) == 1, err
    assert list(tmp_path.iterdir()) == []


def test_the_same_concept_in_other_words_is_refused_on_the_embedded_model(capsys, tmp_path):
    code, _, err = run(["erase", "circle", "--preserve", "a circle", "--out", tmp_path / "run"], capsys)
    assert code == 2 and "'circle' is both a target and a concept to keep ('a circle'" in err
    code, _, err = run(["erase", "circle", "a circle", "--out", tmp_path / "run"], capsys)
    assert code == 2 and "are the same (both become the prompt 'a circle')" in err
    assert list(tmp_path.iterdir()) == []


def test_the_before_after_grid_uses_the_given_sampling_settings(models, tmp_path, capsys, monkeypatch):
    import cadiff.editing.grids

    calls = []
    real = cadiff.editing.grids.render

    def spy(pipe, prompts, seeds, **kwargs):
        calls.append((kwargs.get("steps"), kwargs.get("guidance")))
        return real(pipe, prompts, seeds, **kwargs)

    monkeypatch.setattr(cadiff.editing.grids, "render", spy)
    code, _, err = run(["erase", "a circle", "--method", "cad", "--ratio", "0.1", "--no-export",
                        "--model", models / "a", "--out", tmp_path / "run", "--steps", "3", "--seeds", "1",
                        "--guidance", "2.5"], capsys)
    assert code == 0, err
    assert calls == [(3, 2.5), (3, 2.5)]  # before and after rows, at --steps / --guidance, not SD's 50 / 7.5


def test_concepts_with_one_file_name_get_distinct_files():
    from cadiff.editing.result import slugs

    assert slugs(["a red circle", "a red, circle", "a red circle!"]) == ["a_red_circle", "a_red_circle_2",
                                                                        "a_red_circle_3"]
