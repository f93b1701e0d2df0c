"""The attacks on an erased model: prompts, a learned token, weight revival; each against the original as reference."""

import json

import numpy as np
import pytest
import torch

from cadiff.attacks import attack
from cadiff.attacks.revival import RevivalConfig, revive, soft_impute
from cadiff.attacks.token import TOKEN, TokenConfig, learn_token
from cadiff.cli import main
from cadiff.editing import edited_copy
from cadiff.models.loading import denoiser
from tiny_pipelines import tiny_sd

def test_soft_impute_recovers_a_low_rank_matrix():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(40, 3, generator=g) @ torch.randn(3, 30, generator=g)
    missing = torch.rand(w.shape, generator=g) < 0.1
    filled = soft_impute(torch.where(missing, 0.0, w), missing, rank=0.1, threshold=0.0, iterations=100)
    assert torch.equal(filled[~missing], w[~missing])  # observed entries stay as they were
    error = (filled[missing] - w[missing]).norm() / w[missing].norm()
    assert error < 0.05  # the zeroed entries come back


def test_revival_refills_exactly_the_zeroed_entries_of_a_copy():
    pipe = tiny_sd("sd1")
    name, p = next((n, p) for n, p in denoiser(pipe).named_parameters() if p.ndim == 2 and "to_q" in n)
    from cadiff.attribution.mask import Mask

    mask = Mask({name: torch.tensor([0, 1, 2, 5])}, {name: tuple(p.shape)}, {"fingerprint": None})
    edited = edited_copy(pipe, mask, check=False)
    revived, filled = revive(edited, RevivalConfig(revival_iterations=5))
    assert filled == {name: 4}
    new = dict(denoiser(revived).named_parameters())[name]
    assert (new.flatten()[[0, 1, 2, 5]] != 0).all()
    assert (dict(denoiser(edited).named_parameters())[name].flatten()[[0, 1, 2, 5]] == 0).all()  # the input stays


def test_a_learned_token_leaves_the_original_tokenizer_alone():
    pipe = tiny_sd("sd1")
    size = len(pipe.tokenizer)
    pixels = torch.rand(4, 3, 32, 32)
    learned, losses = learn_token(pipe, pixels, [f"a red {TOKEN}"] * 4, TokenConfig(token_steps=3, token_batch=2))
    assert len(losses) == 3 and all(np.isfinite(losses))
    assert len(pipe.tokenizer) == size and TOKEN in learned.tokenizer.get_vocab()
    assert all(p.requires_grad for p in denoiser(pipe).parameters())  # frozen while learning, then restored


def test_the_three_attacks_on_an_erased_model_end_to_end(shapes_like, tmp_path, capsys):
    common = ["--model", str(shapes_like)]
    assert main(["erase", "circle", "--method", "cad", "--ratio", "0.25", "--scope", "matrix", "--components", "attn",
                 "--seeds", "1", "--no-export", "--out", str(tmp_path / "erase"), *common]) == 0
    argv = ["attack", str(tmp_path / "erase"), "circle", "--prompt-limit", "3", "--token-steps", "2", "--token-images", "4",
            "--token-batch", "2", "--revival-iterations", "3", "--per-prompt", "1", "--out", str(tmp_path / "attack"), *common]
    assert main(argv) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    result = json.loads((tmp_path / "attack" / "attack.json").read_text())
    assert [a["attack"] for a in result["attacks"]] == ["prompt", "token", "revival"]
    for a in result["attacks"]:
        assert a["edited"]["n"] > 0 and a["original"]["n"] == a["edited"]["n"] and 0 <= a["edited"]["accuracy"] <= 1
    revival = result["attacks"][2]
    assert revival["info"]["refilled"] > 0 and len(revival["keep"]) == 14
    assert "attack success for 'circle'" in out and (tmp_path / "attack" / "report.html").is_file()
    assert (tmp_path / "attack" / "grid.png").stat().st_size > 0


@pytest.mark.parametrize("argv, message", [
    (["--attacks", "prompt", "--token-steps", "3"], "--token-steps: options of attacks not run"),
    (["--attacks", "token", "--token-init", "blue circle"], "is not one word of the tokenizer"),
])
def test_bad_attack_input_is_one_line(shapes_like, tmp_path, capsys, argv, message):
    assert main(["erase", "circle", "--method", "cad", "--ratio", "0.25", "--scope", "matrix", "--components", "attn",
                 "--no-export", "--model", str(shapes_like), "--seeds", "1", "--out", str(tmp_path / "erase")]) == 0
    capsys.readouterr()
    code = main(["attack", str(tmp_path / "erase"), "circle", *argv, "--model", str(shapes_like),
                 "--out", str(tmp_path / "attack")])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1 and not (tmp_path / "attack").exists()


def test_attacks_on_a_model_without_a_world_need_their_inputs():
    pipe = tiny_sd("sd2")
    with pytest.raises(ValueError, match="need the concepts to keep"):
        attack(pipe, pipe, "a circle")
    with pytest.raises(ValueError, match="needs a prompt file"):
        attack(pipe, pipe, "a circle", preserve=["a star"], judge=lambda images, c: np.ones(len(images), bool),
               attacks=["prompt"])
    with pytest.raises(ValueError, match="unknown attack"):
        attack(pipe, pipe, "a circle", attacks=["nope"])
    sdxl = tiny_sd("sdxl")
    with pytest.raises(ValueError, match="one text encoder"):
        attack(sdxl, sdxl, "a circle", preserve=["a star"], judge=lambda images, c: np.ones(len(images), bool),
               attacks=["token"], options={"token": {"token_folder": "x"}})
