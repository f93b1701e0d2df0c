"""The CLI's inputs: concept files read strictly as UTF-8, bad prompts and bad files refused in one line before any
model work or run folder, and --truncate carried to an edited pipeline folder and recorded in run.json."""

from __future__ import annotations

import argparse
import json

import pytest

import cadiff
from cadiff.cli import main
from cadiff.cli.attack import load_edited
from cadiff.cli.cad import read_concept_file
from cadiff.models.vocabulary import allow_truncation, check_known_words

LONG = "an image of a red striped star"  # 9 tokens: longer than the embedded model's text encoder reads (8)


def _one_error_line(capsys) -> str:
    """The command's stderr: exactly one line, `cadiff: error: ...` (no progress bar, no traceback)."""
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("cadiff: error: "), err
    return lines[0]


# --preserve-file

def test_preserve_file_is_strict_utf8_naming_file_and_line(tmp_path):
    bad = tmp_path / "keep.txt"
    bad.write_bytes(b"circle\ncaf\xe9 square\n")
    with pytest.raises(ValueError) as exc:
        read_concept_file(str(bad))
    message = str(exc.value)
    assert f"--preserve-file {bad}, line 2: not UTF-8 text (byte 0xe9); save the file as UTF-8" == message
    bom = tmp_path / "bom.txt"
    bom.write_bytes("\ufeffcircle  # the first\nsquare\n".encode("utf-8"))
    assert read_concept_file(str(bom)) == ["circle", "square"]  # a byte-order mark is no part of the first concept


def test_erase_with_a_non_utf8_preserve_file_is_one_line(shapes_like, tmp_path, capsys):
    bad = tmp_path / "keep.txt"
    bad.write_bytes(b"square\n\xff\n")
    out = tmp_path / "run"
    assert main(["erase", "circle", "--method", "cad", "--preserve-file", str(bad), "--ratio", "0.25",
                 "--model", str(shapes_like), "--out", str(out)]) == 2
    line = _one_error_line(capsys)
    assert f"{bad}, line 2: not UTF-8 text (byte 0xff)" in line and "save the file as UTF-8" in line
    assert not out.exists()


def test_prompt_files_keep_their_message(tmp_path):
    from cadiff.evaluation import load_prompts

    bad = tmp_path / "prompts.txt"
    bad.write_bytes(b"a red circle\na bl\xe9 star\n")
    with pytest.raises(ValueError, match=r"^prompt file .*prompts.txt, line 2: not UTF-8 text \(byte 0xe9\); save"):
        load_prompts(bad)


# sae steer --concepts

@pytest.mark.parametrize("content, problem", [
    (b'[{"latent": 0, "fires": 0.5, "labels": {}, "purity": {}, "note": "caf\xe9"}]',
     "line 1: not UTF-8 text (byte 0xe9)"),
    (b'[{"latent": 0,\n', "not valid JSON"),
    (b'{"latent": 0}', "not a concepts.json"),
])
def test_steer_with_a_bad_concepts_file_is_one_line_before_any_model_work(tmp_path, capsys, monkeypatch, content,
                                                                          problem):
    import cadiff.cli.sae

    monkeypatch.setattr(cadiff.cli.sae, "load_from_args", lambda args: pytest.fail("the model was loaded"))
    concepts = tmp_path / "concepts.json"
    concepts.write_bytes(content)
    out = tmp_path / "steer"
    assert main(["sae", "steer", "a red circle", "--concept", "red", "--concepts", str(concepts),
                 "--sae", str(tmp_path / "no-sae"), "--out", str(out)]) == 2
    line = _one_error_line(capsys)
    assert f"--concepts {concepts}" in line and problem in line, line
    assert not out.exists()


# attack: an edited pipeline folder gets the original's --truncate

@pytest.fixture(scope="module")
def embedded_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("edited") / "pipeline"
    cadiff.load_pipeline().save_pretrained(str(folder))
    return folder


def test_an_edited_pipeline_folder_inherits_truncation(embedded_folder):
    original = allow_truncation(cadiff.load_pipeline())
    edited, source = load_edited(str(embedded_folder), original)
    assert source == str(embedded_folder) and edited is not original
    with pytest.warns(UserWarning, match="'star' was cut"):
        check_known_words(edited, [LONG])
    untruncated, _ = load_edited(str(embedded_folder), cadiff.load_pipeline())
    with pytest.raises(ValueError, match="'star' would be cut"):
        check_known_words(untruncated, [LONG])


def test_an_edited_pipeline_folder_is_loaded_with_the_cli_model_options(embedded_folder):
    import torch

    args = argparse.Namespace(model=None, config=None, dtype="bf16", device="cpu", truncate=True)
    original = cadiff.load_pipeline()  # as a Python caller may give it: the options come from args
    edited, _ = load_edited(str(embedded_folder), original, args)
    assert edited.unet.dtype == torch.bfloat16
    with pytest.warns(UserWarning, match="'star' was cut"):
        check_known_words(edited, [LONG])


def test_attack_on_an_edited_pipeline_folder_truncates_both_models_and_records_it(embedded_folder, tmp_path, capsys,
                                                                                   monkeypatch):
    import cadiff.attacks
    import cadiff.cli.report

    seen = {}

    class Result:  # the attack itself is tested elsewhere: here, what it is given
        outcomes = ()

        def to_dict(self):
            return {"attacks": []}

        def table(self):
            return "no attack run"

    def attack(original, edited, concept, **kwargs):
        for name, pipe in (("original", original), ("edited", edited)):
            with pytest.warns(UserWarning, match="'star' was cut"):
                check_known_words(pipe, [LONG])
            seen[name] = True
        return Result()

    monkeypatch.setattr(cadiff.attacks, "attack", attack)
    monkeypatch.setattr(cadiff.cli.report, "write_run_report", lambda args: None)
    out = tmp_path / "attack"
    assert main(["attack", str(embedded_folder), "star", "--attacks", "prompt", "--truncate", "--device", "cpu",
                 "--out", str(out)]) == 0, capsys.readouterr().err
    assert seen == {"original": True, "edited": True}
    assert json.loads((out / "run.json").read_text())["settings"]["truncate"] is True


# generate: prompts checked before the bar and the run folder

@pytest.mark.parametrize("prompt, message", [
    ("a teal circle", "unknown word 'teal'"),
    (LONG, "'star' would be cut"),
])
def test_generate_refuses_a_bad_prompt_in_one_line_with_no_folder(tmp_path, capsys, prompt, message):
    out = tmp_path / "run"
    assert main(["generate", "a red circle", prompt, "-n", "1", "--steps", "2", "--out", str(out)]) == 2
    assert message in _one_error_line(capsys)
    assert list(tmp_path.iterdir()) == []


# --truncate in run.json

def test_generate_records_truncate(tmp_path, capsys):
    with pytest.warns(UserWarning, match="'star' was cut"):
        assert main(["generate", LONG, "-n", "1", "--steps", "2", "--truncate", "--out", str(tmp_path / "t")]) == 0
    assert json.loads((tmp_path / "t" / "run.json").read_text())["settings"]["truncate"] is True
    assert main(["generate", "a red circle", "-n", "1", "--steps", "2", "--out", str(tmp_path / "f")]) == 0
    assert json.loads((tmp_path / "f" / "run.json").read_text())["settings"]["truncate"] is False


def test_attribute_records_truncate(shapes_like, tmp_path, capsys):
    assert main(["attribute", "circle", "--seeds", "1", "--truncate", "--model", str(shapes_like),
                 "--out", str(tmp_path / "run")]) == 0, capsys.readouterr().err
    assert json.loads((tmp_path / "run" / "run.json").read_text())["settings"]["truncate"] is True
