"""One word per idea: `steps` is a number of sampling steps, `at_steps` a window or step indices, `guidance` the
guidance scale, in the API and the CLI alike; the old names fail naming the new ones."""

import pytest

import cadiff
from cadiff.cli import main
from cadiff.sae import collect_activations, steer, train_sae
from tiny_pipelines import tiny_sd


def test_the_old_keywords_name_the_new_ones(tmp_path):
    pipe = tiny_sd("sd1")
    with pytest.raises(TypeError, match=r"generate\(num_inference_steps=\) is now generate\(steps=\)"):
        cadiff.generate(pipe, ["a circle"], [0], num_inference_steps=2)
    with pytest.raises(TypeError, match=r"evaluate\(guidance_scale=\) is now evaluate\(guidance=\)"):
        cadiff.evaluate(pipe, "shapes", tmp_path / "r", guidance_scale=3.0)
    with pytest.raises(TypeError, match="steps= is now the number of sampling steps; .* at_steps="):
        collect_activations(pipe, ["a circle"], [0], tmp_path / "a", ["mid_block.attentions.0"], steps="first")
    with pytest.raises(TypeError, match=r"train_sae\(steps=\) is now train_sae\(at_steps=\)"):
        train_sae(None, "mid_block.attentions.0", steps=[0])
    with pytest.raises(TypeError, match="steps= is now the number of sampling steps"):
        with steer(pipe, None, [0], steps="middle"):
            pass
    assert not (tmp_path / "a").exists() and not (tmp_path / "r").exists()


@pytest.mark.parametrize("argv, old", [
    (["sae", "collect", "a circle", "--capture-steps", "all"], "--capture-steps"),
    (["sae", "train", "acts", "--train-steps", "early"], "--train-steps"),
    (["sae", "steer", "a circle", "--sae", "s", "--latents", "1", "--window", "early"], "--window"),
    (["sae", "inspect", "acts", "--sae", "s", "--step", "0"], "--step"),
    (["erase", "circle", "--schedule", "restart"], "--schedule"),
])
def test_the_old_flags_name_the_new_ones(argv, old, capsys):
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--out", "x"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and f"{old} is now --" in err and len(err.strip().splitlines()) == 1
