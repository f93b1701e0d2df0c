"""ESD and ConceptPrune-style pruning on a tiny random pipeline change the weights they should, and only those."""

import pytest
import torch

from cadiff.evaluation.baselines import erase_with, esd_parameter_names
from tiny_pipelines import tiny_sd


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
    from cadiff.evaluation.baselines.esd import ESDConfig, esd

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
    with pytest.raises(ValueError, match="unknown baseline 'uce'"):
        erase_with("uce", pipe, "circle")
    with pytest.raises(ValueError, match="unknown option"):
        erase_with("prune", pipe, "circle", iterations=3)
    with pytest.raises(ValueError, match="unknown word 'teal'"):
        erase_with("prune", pipe, "a teal circle")
    with pytest.raises(ValueError, match="SDXL"):
        erase_with("esd", tiny_sd("sdxl"), "a circle", iterations=1)


def test_baselines_leave_the_input_pipelines_components_and_dtypes_alone():
    pipe = tiny_sd("sd1")
    pipe.vae.to(torch.float16)  # mixed precision: the edit must not cast shared components in place
    edited, _ = erase_with("prune", pipe, "a red circle", sparsity=0.1, steps=2, seeds=1)
    assert pipe.vae.dtype == torch.float16 and edited.vae is pipe.vae and edited.unet is not pipe.unet
    assert edited.text_encoder is pipe.text_encoder and pipe.unet.dtype == torch.float32
