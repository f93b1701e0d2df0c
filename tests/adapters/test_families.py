"""The denoiser trace across families: cadiff samples each family with the guidance of its stock call, and CAD's
scores equal w * dJ/dw computed by hand from the family's own denoiser calls — a doubled batch (SD, SD3, PixArt,
Sana), a distilled guidance input (Flux-dev), or a second, unconditional call each step (true CFG: Flux-schnell
style, Qwen-Image, Chroma)."""

import numpy as np
import pytest
import torch

import cadiff
from cadiff.adapters import UNGUIDED, adapter_for
from cadiff.attribution import attribute
from cadiff.models.trace import generators
from tiny_pipelines import tiny_sd

STEPS, GUIDANCE = 3, 4.0
EPS32 = torch.finfo(torch.float32).eps
PROMPTS = ["a red circle", "a blue square"]

# How each family's stock call is guided at scale 4: the keywords a user of diffusers writes
STOCK = {
    "sd1": {"guidance_scale": GUIDANCE},
    "sd3": {"guidance_scale": GUIDANCE},
    "pixart": {"guidance_scale": GUIDANCE},
    "sana": {"guidance_scale": GUIDANCE},
    "flux": {"guidance_scale": GUIDANCE},
    "flux-cfg": {"true_cfg_scale": GUIDANCE, "negative_prompt": ["", ""]},
    "qwenimage": {"true_cfg_scale": GUIDANCE, "negative_prompt": ["", ""]},
    "chroma": {"guidance_scale": GUIDANCE},
    "flux2": {"guidance_scale": GUIDANCE},
    "flux2-klein": {"guidance_scale": GUIDANCE},
}
TRUE_CFG = ("flux-cfg", "qwenimage", "chroma", "flux2-klein")  # a second denoiser call per step, the conditional one first


@pytest.fixture(scope="module", params=sorted(STOCK))
def any_family(request):
    return request.param, tiny_sd(request.param)


@pytest.fixture(scope="module", params=TRUE_CFG)
def two_calls(request):
    return request.param, tiny_sd(request.param)


def test_generate_samples_each_family_as_its_stock_call_does(any_family):
    name, pipe = any_family
    ours = cadiff.generate(pipe, PROMPTS, seeds=[0, 1], steps=2, guidance=GUIDANCE)
    stock = pipe(prompt=PROMPTS, num_inference_steps=2, generator=generators([0, 1]), output_type="np",
                 **STOCK[name]).images
    np.testing.assert_array_equal(ours, (np.clip(stock, 0, 1) * 255).round().astype(np.uint8))
    unguided = cadiff.generate(pipe, PROMPTS, seeds=[0, 1], steps=2, guidance=1.0)
    assert (ours != unguided).any()  # the guidance reached the sampler


def _raw_calls(pipe, name, prompt, seed):
    """Every denoiser call of the stock call at GUIDANCE, its keywords and output, recorded by a plain hook."""
    calls = []

    def hook(module, args, kwargs, output):
        assert not args  # these pipelines pass everything by keyword
        calls.append(({k: v.detach().clone() if torch.is_tensor(v) else v for k, v in kwargs.items()},
                      output[0].detach().clone()))

    handle = pipe.transformer.register_forward_hook(hook, with_kwargs=True)
    try:
        pipe(prompt=[prompt], num_inference_steps=STEPS, generator=generators([seed]), output_type="latent",
             **{k: v[:1] if isinstance(v, list) else v for k, v in STOCK[name].items()})
    finally:
        handle.remove()
    return calls


def test_scores_equal_weight_times_gradient_by_hand_under_true_cfg(two_calls):
    """J = sum over steps of ||v(z_t, c) - sg v(z_t, '')||^2, the two outputs being the step's two calls."""
    name, pipe = two_calls
    attr = attribute(pipe, "a red circle", seeds=[3], steps=STEPS, guidance=GUIDANCE, components="linear",
                     progress=False)
    calls = _raw_calls(pipe, name, "a red circle", 3)
    assert len(calls) == 2 * STEPS
    net = pipe.transformer
    params = dict(net.named_parameters())
    names = sorted(attr.scores)[:2] + sorted(attr.scores)[-2:]
    grads = {n: torch.zeros_like(params[n]) for n in names}
    total = 0.0
    for (cond, _), (_, uncond_out) in zip(calls[0::2], calls[1::2]):
        out = net(**cond)[0]
        loss = (out - uncond_out).pow(2).sum()
        for n, g in zip(names, torch.autograd.grad(loss, [params[n] for n in names], allow_unused=True)):
            grads[n] += 0 if g is None else g  # the last block's text stream reaches no output
        total += float(loss.detach())
    assert attr.metadata["J"] == pytest.approx(total, rel=1e-4)
    for n in names:
        hand = params[n].detach() * grads[n]
        torch.testing.assert_close(attr.scores[n], hand, rtol=1e-4, atol=256 * EPS32 * float(hand.abs().max()))
    assert all(attr.scores[n].abs().sum() > 0 for n in names[:2])


def test_a_step_window_scores_the_steps_it_names_under_true_cfg(two_calls):
    _, pipe = two_calls
    one = attribute(pipe, "a red circle", seeds=[3], steps=STEPS, guidance=GUIDANCE, at_steps="1", progress=False)
    assert one.metadata["J"] > 0  # the unconditional call of step 1 is not mistaken for a step of its own


def test_a_pipeline_calling_its_denoiser_otherwise_than_its_adapter_says_is_refused(two_calls, monkeypatch):
    name, pipe = two_calls
    adapter = type(adapter_for(pipe.transformer))
    monkeypatch.setattr(adapter, "layout", lambda self, pipe, guidance: UNGUIDED)  # an adapter that is wrong
    with pytest.raises(RuntimeError, match=r"called its denoiser 2 times at step 0, but its adapter \(\w+\) "
                                           r"expects 1 per step"):
        attribute(pipe, "a red circle", seeds=[3], steps=STEPS, guidance=GUIDANCE, progress=False)
