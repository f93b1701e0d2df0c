"""The edit methods behind `cadiff.erase(pipe, concept, config)`: ESD and ConceptPrune-style pruning on a tiny
random pipeline change the weights they should, and only those; the magnitude control zeroes the largest weights; a
new method is one registered class."""

import pytest
import torch

import cadiff
from cadiff.editing.methods import method_config
from cadiff.editing.methods.esd import esd_parameter_names
from cadiff.editing.methods.magnitude import MagnitudeConfig
from tiny_pipelines import tiny_sd


def erase_with(method, pipe, concept, preserve=None, **options):
    """A baseline through the one entry point, its config made by name: (edited pipeline, what the method
    reported)."""
    variant = {"variant": "x"} if method == "esd-x" else {}
    config = method_config(method.removesuffix("-x"), **variant, **options)
    result = cadiff.erase(pipe, concept, config, preserve=preserve, progress=False)
    return result.pipeline, result.info


def snapshot(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def changed(before, module):
    return {k for k, v in module.state_dict().items() if not torch.equal(before[k], v)}


@pytest.fixture
def pipe():
    return tiny_sd("sd1")


def test_esd_u_trains_all_but_cross_attention_output_and_time_embedding(pipe):
    unet, text, vae = snapshot(pipe.unet), snapshot(pipe.text_encoder), snapshot(pipe.vae)
    edited, info = erase_with("esd", pipe, "a red circle", iterations=3, lr=1e-3, steps=3)
    moved = changed(unet, edited.unet)
    allowed = set(esd_parameter_names(pipe.unet, "u"))
    assert moved and moved <= allowed
    assert len(moved) > len(allowed) // 2  # most trained tensors moved (a few get no gradient at step 0)
    assert not any("attn2" in k or k.startswith(("conv_out", "conv_norm_out", "time_embedding")) for k in moved)
    assert changed(unet, pipe.unet) == set() and changed(text, edited.text_encoder) == set()
    assert changed(vae, edited.vae) == set() and edited.unet is not pipe.unet
    assert info["method"] == "esd-u" and info["trained_elements"] == sum(
        p.numel() for n, p in pipe.unet.named_parameters() if n in allowed)


def test_esd_x_trains_only_cross_attention(pipe):
    unet = snapshot(pipe.unet)
    edited, info = erase_with("esd-x", pipe, "a red circle", iterations=2, lr=1e-3, steps=3)
    moved = changed(unet, edited.unet)
    assert moved and all("attn2" in k for k in moved)
    assert any(k.endswith("attn2.to_k.weight") for k in moved) and any(k.endswith("attn2.to_v.weight") for k in moved)
    assert info["method"] == "esd-x" and set(info["trained_parameters"]) == set(esd_parameter_names(pipe.unet, "x"))


def test_esd_output_moves_towards_negative_guidance_target(pipe):
    """After training, the student's prediction for the concept is closer to the frozen model's guided-away target
    (checked on fresh latents from the training distribution: 1 sampling step, so z_t is pure noise)."""
    from cadiff.editing.methods.esd import ESDConfig, esd

    cond, _ = pipe.encode_prompt("a red circle", "cpu", 1, False)
    empty, _ = pipe.encode_prompt("", "cpu", 1, False)
    pipe.scheduler.set_timesteps(1)
    t = pipe.scheduler.timesteps[0]
    z = torch.randn(8, 4, 8, 8, generator=torch.Generator().manual_seed(123))
    c, e = cond.expand(8, -1, -1), empty.expand(8, -1, -1)
    with torch.no_grad():
        e0, ep = pipe.unet(z, t, encoder_hidden_states=e).sample, pipe.unet(z, t, encoder_hidden_states=c).sample
        target = e0 - (ep - e0)
    edited, info = esd(pipe, "a red circle", ESDConfig(iterations=60, lr=3e-4, steps=1))
    with torch.no_grad():
        after = edited.unet(z, t, encoder_hidden_states=c).sample
    assert (after - target).pow(2).mean() < 0.7 * (ep - target).pow(2).mean()


def test_prune_zeroes_only_ffn_output_weights(pipe):
    unet, text = snapshot(pipe.unet), snapshot(pipe.text_encoder)
    edited, info = erase_with("prune", pipe, "a red circle", preserve=["a blue square"], sparsity=0.1,
                              timestep_fraction=0.5, steps=4, seeds=2)
    moved = changed(unet, edited.unet)
    assert moved and all(k.endswith("ff.net.2.weight") for k in moved)
    after = edited.unet.state_dict()
    newly_zero = sum(int(((unet[k] != 0) & (after[k] == 0)).sum()) for k in moved)
    assert newly_zero == info["pruned_total"] > 0
    for k in moved:  # nothing else in those matrices moved
        assert torch.equal(after[k][after[k] != 0], unet[k][after[k] != 0])
    assert changed(unet, pipe.unet) == set() and changed(text, edited.text_encoder) == set()
    assert info["reference_prompts"] == ["a blue square"]


def test_prune_depends_on_the_concept(pipe):
    _, a = erase_with("prune", pipe, "a red circle", sparsity=0.1, steps=3, seeds=2)
    _, b = erase_with("prune", pipe, "a blue star", sparsity=0.1, steps=3, seeds=2)
    assert a["pruned"] != b["pruned"] or a["pruned_total"] != b["pruned_total"]


def test_bad_method_and_options_are_clear_errors(pipe):
    with pytest.raises(ValueError, match="unknown edit method 'uce'"):
        erase_with("uce", pipe, "circle")
    with pytest.raises(ValueError, match="method 'prune' takes no option 'iterations'"):
        erase_with("prune", pipe, "circle", iterations=3)
    with pytest.raises(ValueError, match="unknown word 'teal'"):
        erase_with("prune", pipe, "a teal circle")
    sdxl = tiny_sd("sdxl")  # ESD reads the conditioning off the pipeline's own calls, so SDXL's added one too
    before = snapshot(sdxl.unet)
    edited, _ = erase_with("esd", sdxl, "a circle", iterations=2, lr=1e-3, steps=2)
    assert changed(before, edited.unet) and not changed(before, sdxl.unet)


def test_baselines_leave_the_input_pipelines_components_and_dtypes_alone():
    pipe = tiny_sd("sd1")
    pipe.vae.to(torch.float16)  # mixed precision: the edit must not cast shared components in place
    edited, _ = erase_with("prune", pipe, "a red circle", sparsity=0.1, steps=2, seeds=1)
    assert pipe.vae.dtype == torch.float16 and edited.vae is pipe.vae and edited.unet is not pipe.unet
    assert edited.text_encoder is pipe.text_encoder and pipe.unet.dtype == torch.float32


def test_the_magnitude_control_zeroes_the_largest_weights_whatever_the_concept(pipe):
    from cadiff.attribution import select_parameters

    a = cadiff.erase(pipe, "a red circle", MagnitudeConfig(components="ff", ratio=0.25))
    b = cadiff.erase(pipe, "a blue star", MagnitudeConfig(components="ff", ratio=0.25))
    assert a.mask.counts() == b.mask.counts() and all(torch.equal(a.mask.indices[n], b.mask.indices[n])
                                                       for n in a.mask.indices)
    for name, w in select_parameters(pipe.unet, "ff").items():
        rows = w.detach().abs().reshape(w.shape[0], -1)
        k = int(0.25 * rows.shape[1])
        chosen = torch.zeros(rows.numel(), dtype=torch.bool)
        chosen[a.mask.indices[name]] = True
        chosen = chosen.reshape(rows.shape)
        assert (chosen.sum(1) == k).all()  # the same count per row as CAD's rule would take
        assert (rows[chosen].reshape(-1, k).min(1).values >= rows.masked_fill(chosen, -1).max(1).values).all()
    edited = dict(a.pipeline.unet.named_parameters())
    assert all((edited[n].detach().reshape(-1)[i] == 0).all() for n, i in a.mask.indices.items())
    with pytest.raises(ValueError, match="has no concepts to keep"):
        cadiff.erase(pipe, "a red circle", MagnitudeConfig(), preserve=["a star"])


def test_a_new_method_is_one_registered_class_and_gets_its_flags(pipe, tmp_path, monkeypatch, capsys):
    from dataclasses import dataclass

    from cadiff.cli import main
    from cadiff.editing.copies import with_denoiser
    from cadiff.editing.methods import METHODS, EditMethod, register_method
    from cadiff.editing.result import EditResult
    from cadiff.config import Config, option

    @dataclass(frozen=True)
    class ScaleConfig(Config):
        factor: float = option(1.0, "scale every denoiser weight by this")

    @register_method
    class Scale(EditMethod):  # a toy: not an erase, a proof that the seam takes a method in one class
        name, summary, config_class, takes_preserve = "scale-test", "scale the weights", ScaleConfig, False

        def run(self, pipe, request):
            import copy

            net = copy.deepcopy(pipe.unet)
            with torch.no_grad():
                for p in net.parameters():
                    p.mul_(self.config.factor)
            return EditResult(with_denoiser(pipe, net), self.name, request.objective,
                              list(request.concepts.targets), [], self.config)

    monkeypatch.setitem(METHODS, Scale.name, Scale)  # removed again after the test
    result = cadiff.erase(pipe, "a red circle", ScaleConfig(), factor=0.5)
    w = next(pipe.unet.parameters())
    assert torch.equal(next(result.pipeline.unet.parameters()), 0.5 * w) and result.settings()["factor"] == 0.5
    model = tmp_path / "model"
    pipe.save_pretrained(model)
    assert main(["erase", "a red circle", "--method", "scale-test", "--factor", "2", "--steps", "2",
                 "--model", str(model), "--out", str(tmp_path / "run")]) == 2  # --steps is not its option
    assert ("--steps: not an option of --method scale-test; --method cad or esd or prune or cadtrain or calibrated takes it "
            "(--method cad --help lists its flags)") in capsys.readouterr().err
    assert main(["erase", "a red circle", "--method", "scale-test", "--factor", "2", "--model", str(model),
                 "--out", str(tmp_path / "run")]) == 0
    import json

    assert json.loads((tmp_path / "run" / "run.json").read_text())["edit"]["factor"] == 2.0
    assert (tmp_path / "run" / "pipeline" / "model_index.json").is_file()


def test_an_edit_result_saves_everything_it_holds(pipe, tmp_path):
    import json

    from cadiff.attribution import Attribution
    from cadiff.editing import Mask

    result = cadiff.erase(pipe, ["a circle", "a red square"], cadiff.CADConfig(), ratio=0.25, rounds=2, seeds=1,
                          steps=2, progress=False)
    out = result.save(tmp_path / "run")
    names = sorted(p.name for p in out.iterdir())
    assert names == ["a_circle.round2.attr.png", "a_circle.round2.attr.safetensors", "a_circle.round2.summary.json",
                     "a_red_square.round2.attr.png", "a_red_square.round2.attr.safetensors",
                     "a_red_square.round2.summary.json", "edit.json", "mask.round1.safetensors", "mask.safetensors",
                     "pipeline"]
    assert len(Mask.load(out / "mask.safetensors")) == len(result.mask)
    assert Attribution.load(out / "a_circle.round2.attr.safetensors").metadata["concepts"] == ["a circle"]
    record = json.loads((out / "edit.json").read_text())
    assert record["method"] == "cad" and record["rounds"] == 2 and record["zeroed"] == len(result.mask)
    assert json.loads((out / "pipeline" / "cadiff_edit.json").read_text())["zeroed"] == len(result.mask)
    with pytest.raises(FileExistsError):
        result.save(tmp_path / "run")


def test_the_magnitude_control_takes_whole_heads_too(pipe):
    from cadiff.adapters import adapter_for
    from cadiff.attribution import select_parameters
    from cadiff.attribution.selection import head_scores

    result = cadiff.erase(pipe, "a red circle", MagnitudeConfig(components="attn", count=1, scope="head"))
    scores = {n: p.detach().abs().float() for n, p in select_parameters(pipe.unet, "attn").items()}
    heads = {n: v for n, v in adapter_for(pipe.unet).head_layout(pipe.unet).items() if n in scores}
    totals = head_scores(scores, heads)
    module, _ = max(totals, key=totals.get)
    assert result.mask.indices and all(name.startswith(module + ".") for name in result.mask.indices)
