"""A model no adapter knows (CogView3-Plus here): the generic path probes the pipeline's own denoiser calls, scores
the erase objective exactly, erases, and its edit exports and applies; what needs a family's units says so."""

import pytest
import torch

import cadiff
from cadiff.adapters import PROBED, UnknownDenoiser, adapter_for
from cadiff.adapters.generic import NeedsAdapter, probe
from cadiff.attribution import attribute
from cadiff.models.trace import generators
from hand import assert_scores_equal, hand_scores
from tiny_pipelines import tiny_cogview3

STEPS, GUIDANCE = 3, 4.0


@pytest.fixture()
def pipe():
    PROBED.clear()  # each test probes afresh
    yield tiny_cogview3()
    PROBED.clear()


def test_the_probe_reads_the_latent_timestep_conditioning_and_guidance_layout(pipe):
    with pytest.raises(UnknownDenoiser, match="does not support the CogView3PlusTransformer2DModel denoiser yet"):
        adapter_for(pipe.transformer)
    found = probe(pipe, pipe.transformer, "a red circle", "").describe()
    assert found == {"adapter": "generic", "latent": "hidden_states", "timestep": "timestep (t)",
                     "guidance": "batch uncond/cond", "conditioning": ["encoder_hidden_states"]}


def test_generic_scores_equal_weight_times_gradient_by_hand(pipe):
    attr = attribute(pipe, "a red circle", seeds=[3], steps=STEPS, guidance=GUIDANCE, components="linear",
                     progress=False)
    assert attr.metadata["adapter"] == "generic"
    calls = []
    pipe.transformer.register_forward_hook(lambda m, a, kw, out: calls.append((kw, out[0].detach())), with_kwargs=True)
    pipe(prompt=["a red circle"], num_inference_steps=STEPS, guidance_scale=GUIDANCE, generator=generators([3]),
         output_type="latent")
    pipe.transformer._forward_hooks.clear()
    net = pipe.transformer
    names = sorted(attr.scores)[:3]
    conditional = [{k: v[1:] if torch.is_tensor(v) and v.ndim and v.shape[0] == 2 else v for k, v in kwargs.items()}
                   for kwargs, _ in calls]  # [unconditional, conditional] rows; the model's own output units
    losses = [(net(**{**cond, "return_dict": False})[0] - out[:1]).pow(2).sum()
              for cond, (_, out) in zip(conditional, calls)]
    assert_scores_equal(attr.scores, hand_scores(net, names, losses))
    assert all(attr.scores[n].abs().sum() > 0 for n in names)


def test_a_generic_erase_exports_a_folder_stock_diffusers_loads_and_the_cli_applies_it(pipe, tmp_path):
    from diffusers import DiffusionPipeline

    from cadiff.cli import main

    result = cadiff.erase(pipe, "a red circle", cadiff.CADConfig(components="linear", ratio=0.1, seeds=1, steps=2),
                          progress=False)
    assert len(result.mask) > 0
    folder = result.export(tmp_path / "edited")
    weights = dict(DiffusionPipeline.from_pretrained(str(folder)).transformer.named_parameters())
    assert all((weights[n].detach().reshape(-1)[i] == 0).all() for n, i in result.mask.indices.items())
    pipe.save_pretrained(tmp_path / "model")
    result.mask.save(tmp_path / "mask.safetensors")
    assert main(["apply", str(tmp_path / "mask.safetensors"), "--model", str(tmp_path / "model"),
                 "--out", str(tmp_path / "applied")]) == 0
    applied = (tmp_path / "applied/transformer/diffusion_pytorch_model.safetensors").read_bytes()
    assert applied == (folder / "transformer/diffusion_pytorch_model.safetensors").read_bytes()


@pytest.mark.parametrize("ask, what", [
    (dict(components="ff"), "the 'ff' group needs an adapter for CogView3PlusTransformer2DModel"),
    (dict(objective="amplify", components="linear"), "the amplify objective needs an adapter for CogView3PlusTransformer2DModel"),
])
def test_what_needs_a_family_adapter_says_so_in_one_line(pipe, ask, what):
    with pytest.raises(NeedsAdapter, match=what):
        attribute(pipe, "a red circle", seeds=1, steps=2, progress=False, **ask)


def test_heads_and_sae_hookpoints_need_an_adapter(pipe):
    from cadiff.sae import hookpoints

    attr = attribute(pipe, "a red circle", seeds=1, steps=2, components="linear", progress=False)
    with pytest.raises(ValueError, match="head layout"):
        attr.select(count=1, scope="head")
    with pytest.raises(NeedsAdapter, match="reading SAE hookpoints needs an adapter"):
        hookpoints(pipe)


def test_the_probe_refuses_what_it_cannot_tell(pipe, monkeypatch):
    from cadiff.adapters.generic import GenericAdapter

    with pytest.raises(ValueError, match="compares the concept's prompt with the base prompt: they must differ"):
        probe(pipe, pipe.transformer, "a red circle", "a red circle")
    real = GenericAdapter.forward
    monkeypatch.setattr(GenericAdapter, "forward", lambda self, *a: real(self, *a) + 1e-2)  # a misread input
    with pytest.raises(NeedsAdapter, match="replaying a recorded call did not reproduce its output"):
        attribute(pipe, "a red circle", seeds=1, steps=2, progress=False)


@pytest.mark.parametrize("name, family", [("sd3", "sd3"), ("cogview4", "cogview4")])
def test_the_generic_path_scores_what_the_family_adapter_scores(name, family):
    """SD3 (a doubled batch) and CogView4 (a second call each step) with their adapters set aside: the probe reads
    their calls, and the erase objective's scores are the adapter's."""
    from cadiff.adapters import ADAPTERS
    from tiny_pipelines import tiny_sd

    pipe = tiny_sd(name)
    settings = dict(seeds=[2], steps=2, guidance=4.0, components="linear", progress=False)
    known = attribute(pipe, "a red circle", **settings)
    registered = dict(ADAPTERS)  # set back in its order after (the refusal message lists the families in it)
    try:
        del ADAPTERS[family]
        PROBED.clear()
        probed = attribute(pipe, "a red circle", **settings)
    finally:
        ADAPTERS.clear()
        ADAPTERS.update(registered)
        PROBED.clear()
    assert known.metadata["adapter"] == family and probed.metadata["adapter"] == "generic"
    assert set(probed.scores) == set(known.scores)
    for n, s in known.scores.items():
        torch.testing.assert_close(probed.scores[n], s, rtol=1e-5, atol=1e-7)
