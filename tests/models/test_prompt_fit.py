"""A prompt longer than the text encoder reads is refused before any model work, or cut with a warning once
`allow_truncation(pipe)` (the CLI's --truncate) says so; which tokenizer's limit counts depends on the pipeline."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from tiny_pipelines import tiny_sd

import cadiff
from cadiff.cli import main
from cadiff.models.vocabulary import allow_truncation, check_known_words

LONG = "an image of a red striped star"  # 7 words + start and end tokens: 9 > the embedded model's 8


def _refused(pipe, prompt, limit, cut):
    with pytest.raises(ValueError) as exc:
        check_known_words(pipe, [prompt])
    message = str(exc.value)
    assert f"prompt '{prompt}'" in message and f"at most {limit}" in message and f"'{cut}' would be cut" in message
    assert "--truncate" in message and "allow_truncation(pipe)" in message and "\n" not in message
    return message


def test_the_embedded_model_refuses_a_prompt_it_would_cut(shapes_pipe):
    message = _refused(shapes_pipe, LONG, 8, "star")
    assert "9 tokens" in message
    check_known_words(shapes_pipe, ["an image of a red star"])  # 8 tokens: fits exactly


def test_generate_refuses_before_any_model_work(monkeypatch):
    pipe = tiny_sd("sd1")
    monkeypatch.setattr(type(pipe), "__call__", lambda *a, **k: pytest.fail("the model ran"))
    with pytest.raises(ValueError, match="'star' would be cut"):
        cadiff.generate(pipe, ["a red circle", LONG], seeds=[0, 1], steps=2)


def test_allowed_truncation_warns_once_naming_the_cut_and_generates_the_cut_prompt():
    pipe = tiny_sd("sd1")
    kept = cadiff.generate(pipe, ["an image of a red striped"], seeds=[3], steps=2)
    assert allow_truncation(pipe) is pipe
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_known_words(pipe, [LONG])
        cut = cadiff.generate(pipe, [LONG], seeds=[3], steps=2)
    messages = [str(w.message) for w in caught if "was cut" in str(w.message)]
    assert len(messages) == 1 and f"prompt '{LONG}'" in messages[0] and "'star' was cut" in messages[0]
    np.testing.assert_array_equal(cut, kept)  # what the model saw: the prompt without 'star'


def test_truncation_is_per_pipeline():
    allowed, other = allow_truncation(tiny_sd("sd1")), tiny_sd("sd1")
    with pytest.warns(UserWarning, match="'star' was cut"):
        check_known_words(allowed, [LONG])
    _refused(other, LONG, 8, "star")


@pytest.mark.parametrize("kind", ["sd3", "sdxl"])
def test_clip_only_pipelines_count_the_clip_limit(kind):
    _refused(tiny_sd(kind), LONG, 8, "star")  # tiny SD3 has no T5: CLIP carries the prompt


def test_the_embedded_dit_refuses_too():
    _refused(cadiff.load_pipeline("embedded:dit"), LONG + " circle", 8, "star circle")


def test_long_context_encoders_count_their_own_limit():
    from transformers import T5Config, T5EncoderModel

    from cadiff.worlds.shapes.architecture import build_tokenizer

    flux = tiny_sd("flux")  # CLIP keeps 8 tokens, T5 reads up to max_sequence_length=512: the long prompt fits
    check_known_words(flux, [LONG])
    _refused(flux, " ".join(["a red circle"] * 170) + " star", 512, "star")  # 511 words + 2 = 513 tokens
    sd3 = tiny_sd("sd3")
    sd3.register_modules(tokenizer_3=build_tokenizer(), text_encoder_3=T5EncoderModel(T5Config(
        vocab_size=30, d_model=8, d_kv=4, d_ff=8, num_layers=1, num_heads=2)))
    check_known_words(sd3, [LONG])  # SD3 with T5: its 256 tokens count, not CLIP's
    _refused(sd3, " ".join(["a red"] * 127) + " star", 256, "star")
    for kind in ("pixart", "sana"):  # their single T5 / Gemma tokenizer with the pipeline's max_sequence_length (8)
        _refused(tiny_sd(kind), LONG, 8, "star")


def test_cli_refuses_in_one_line_and_truncate_flag_cuts_with_a_warning(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["generate", LONG, "-n", "1", "--steps", "2", "--out", str(out)]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line and "generate:" not in line]  # not the bar
    assert len(err) == 1 and err[0].startswith("cadiff: error: prompt '") and "'star' would be cut" in err[0]
    assert not out.exists() and list(tmp_path.iterdir()) == []
    with pytest.warns(UserWarning, match="'star' was cut"):
        assert main(["generate", LONG, "-n", "1", "--steps", "2", "--truncate", "--out", str(out)]) == 0
    assert (out / "grid.png").is_file()
