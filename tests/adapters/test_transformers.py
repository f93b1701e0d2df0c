"""CAD on transformer denoisers through their adapters: a tiny SD3-style MMDiT (flow matching) and a tiny
PixArt-α-style DiT (DDPM schedule, learned variance) — scores equal w * dJ/dw by hand in the model's units, the
estimators agree, the component groups name the blocks' weights, and an erase exports a folder stock diffusers
loads."""

import math

import numpy as np
import pytest
import torch

import cadiff
from cadiff.adapters import adapter_for
from cadiff.attribution import attribute, select_parameters
from cadiff.attribution.estimators import Row, erase_restart, erase_trajectory
from cadiff.attribution.gradients import accumulate
from tiny_pipelines import reloaded, tiny_sd

STEPS, GUIDANCE = 3, 4.0
EPS32 = torch.finfo(torch.float32).eps


@pytest.fixture(scope="module")
def sd3():
    return tiny_sd("sd3")


@pytest.fixture(scope="module")
def pixart():
    return tiny_sd("pixart")


@pytest.fixture(scope="module", params=["sd3", "pixart", "flux", "sana", "flux-cfg", "qwenimage", "chroma", "flux2",
                                        "flux2-klein", "flux2-klein-distilled", "zimage", "lumina2", "cogview4",
                                        "hunyuanimage", "hidream"])
def family(request):
    return request.param, tiny_sd(request.param)


def _hand_scores(pipe, prompt, seed, names):
    """w * dJ/dw with J = sum_t ||v(z_t, c) - sg v(z_t, '')||^2 on the trajectory the stock call samples."""
    net, sched = pipe.transformer, pipe.scheduler
    z_start = torch.randn((1, 4, 8, 8), generator=torch.Generator().manual_seed(seed))
    latents = [z_start]

    def keep(p, i, t, kw):
        latents.append(kw["latents"].clone())
        return {}

    pipe(prompt, num_inference_steps=STEPS, guidance_scale=GUIDANCE, latents=z_start.clone(), output_type="latent",
         height=16, width=16, callback_on_step_end=keep)
    cond, uncond, pooled, uncond_pooled = pipe.encode_prompt(prompt, None, None, do_classifier_free_guidance=True,
                                                             negative_prompt="")
    params = dict(net.named_parameters())
    grads = {n: torch.zeros_like(params[n]) for n in names}
    for z, t in zip(latents, sched.timesteps):
        t = t.expand(1)
        with torch.no_grad():
            target = net(hidden_states=z, timestep=t, encoder_hidden_states=uncond,
                         pooled_projections=uncond_pooled).sample
        out = net(hidden_states=z, timestep=t, encoder_hidden_states=cond, pooled_projections=pooled).sample
        loss = (out - target).pow(2).sum()
        for n, g in zip(names, torch.autograd.grad(loss, [params[n] for n in names])):
            grads[n] += g
    return {n: params[n].detach() * grads[n] for n in names}


def test_scores_equal_weight_times_gradient_by_hand_in_velocity_units(sd3):
    attr = attribute(sd3, "a red circle", seeds=[3], steps=STEPS, guidance=GUIDANCE, progress=False)
    assert attr.metadata["denoiser"] == "SD3Transformer2DModel"
    names = sorted(attr.scores)[:3]
    hand = _hand_scores(sd3, "a red circle", 3, names)
    for n in names:
        # backward matmuls round each entry at the scale of the largest products in its reduction, so the error
        # is a few ulps of the tensor's max, not of each entry
        torch.testing.assert_close(attr.scores[n], hand[n], rtol=1e-4, atol=256 * EPS32 * float(hand[n].abs().max()))
        assert attr.scores[n].abs().sum() > 0


def _pixart_hand_scores(pipe, prompt, seed, names):
    """w * dJ/dw with J = sum_t ||eps(z_t, c) - sg eps(z_t, '')||^2, eps the first half of the learned-variance
    output, on the trajectory the stock call samples (read through its legacy step callback)."""
    net, sched = pipe.transformer, pipe.scheduler
    z_start = torch.randn((1, 4, 8, 8), generator=torch.Generator().manual_seed(seed))
    latents = [z_start]
    pipe(prompt, num_inference_steps=STEPS, guidance_scale=GUIDANCE, latents=z_start.clone(), output_type="latent",
         callback=lambda i, t, z: latents.append(z.clone()), callback_steps=1)
    cond, cond_mask, uncond, uncond_mask = pipe.encode_prompt(prompt, True, negative_prompt="", clean_caption=False,
                                                              max_sequence_length=8)
    params = dict(net.named_parameters())
    grads = {n: torch.zeros_like(params[n]) for n in names}
    extra = {"added_cond_kwargs": {"resolution": None, "aspect_ratio": None}}
    for z, t in zip(latents, sched.timesteps):
        t = t.expand(1)
        with torch.no_grad():
            target = net(z, encoder_hidden_states=uncond, encoder_attention_mask=uncond_mask, timestep=t,
                         **extra).sample[:, :4]
        out = net(z, encoder_hidden_states=cond, encoder_attention_mask=cond_mask, timestep=t, **extra).sample[:, :4]
        loss = (out - target).pow(2).sum()
        for n, g in zip(names, torch.autograd.grad(loss, [params[n] for n in names])):
            grads[n] += g
    return {n: params[n].detach() * grads[n] for n in names}


def test_pixart_scores_equal_weight_times_gradient_by_hand_in_epsilon_units(pixart):
    attr = attribute(pixart, "a red circle", seeds=[3], steps=STEPS, guidance=GUIDANCE, progress=False)
    assert attr.metadata["denoiser"] == "PixArtTransformer2DModel"
    names = sorted(attr.scores)[:3]
    hand = _pixart_hand_scores(pixart, "a red circle", 3, names)
    for n in names:
        # backward matmuls round each entry at the scale of the largest products in its reduction, so the error
        # is a few ulps of the tensor's max, not of each entry
        torch.testing.assert_close(attr.scores[n], hand[n], rtol=1e-4, atol=256 * EPS32 * float(hand[n].abs().max()))
        assert attr.scores[n].abs().sum() > 0


def test_trajectory_and_restart_agree(family):
    _, pipe = family
    rows = [Row("a blue star", 5, 0), Row("a blue star", 6, 0)]
    net = pipe.transformer
    traj = erase_trajectory(pipe, net, rows, STEPS, GUIDANCE)
    own = erase_restart(pipe, net, rows, STEPS, GUIDANCE, pair_previous=False)
    ref = erase_restart(pipe, net, rows, STEPS, GUIDANCE)  # what --estimator restart runs
    assert len(traj) == len(own) == len(ref) == STEPS
    for a, b in zip(traj, own):
        torch.testing.assert_close(a.sample, b.sample)
        torch.testing.assert_close(a.target, b.target, rtol=1e-4, atol=1e-5)
    for i in range(1, STEPS):  # the reference pairs the latent after i steps with the timestep of step i
        torch.testing.assert_close(ref[i - 1].sample, traj[i].sample)
        assert float(ref[i - 1].timestep.reshape(-1)[0]) == pytest.approx(float(traj[i - 1].timestep.reshape(-1)[0]))
    params = select_parameters(net, "ff")
    (g_traj, j_traj), (g_own, j_own) = accumulate(net, params, traj, {0: 0.5}), accumulate(net, params, own, {0: 0.5})
    assert math.isclose(j_traj[0], j_own[0], rel_tol=1e-4)
    for n in params:
        # backward matmuls round at the scale of the tensor's largest entries: a few ulps of its max
        torch.testing.assert_close(g_traj[0][n], g_own[0][n], rtol=1e-3,
                                   atol=256 * EPS32 * float(g_own[0][n].abs().max()))


def test_component_groups_name_the_joint_blocks_weights(sd3):
    net = sd3.transformer
    ff, attn, text, linear = (set(select_parameters(net, g)) for g in ("ff", "attn", "text", "linear"))
    assert any(".ff_context." in n for n in ff) and any(".ff." in n for n in ff)
    assert text and all(n.endswith(("add_q_proj.weight", "add_k_proj.weight", "add_v_proj.weight")) for n in text)
    assert any(n.endswith("attn.add_q_proj.weight") for n in attn) and any(n.endswith("attn.to_q.weight") for n in attn)
    assert ff | attn < linear and all(n.startswith("transformer_blocks.") for n in linear)
    assert adapter_for(net).name == "sd3"


def test_pixart_component_groups_are_its_blocks_attn1_attn2_and_ff(pixart):
    net = pixart.transformer
    attn, text = set(select_parameters(net, "attn")), set(select_parameters(net, "text"))
    assert any(".attn2.to_k." in n for n in attn) and all(".attn1." in n or ".attn2." in n for n in attn)
    assert text < attn and all(n.endswith(("attn2.to_k.weight", "attn2.to_v.weight")) for n in text)
    assert adapter_for(net).name == "pixart"


def test_amplify_and_erase_export_a_folder_stock_diffusers_loads(family, tmp_path):
    from diffusers import DiffusionPipeline

    name, sd3 = family
    amp = attribute(sd3, "a red circle", objective="amplify", seeds=2, steps=STEPS, guidance=GUIDANCE, progress=False)
    assert amp.metadata["J"] < 0 and sum(s.abs().sum() for s in amp.scores.values()) > 0
    result = cadiff.erase(sd3, "a red circle", cadiff.CADConfig(components="linear", ratio=0.1, seeds=1, steps=2,
                                                                guidance=GUIDANCE), progress=False)
    folder = result.export(tmp_path / "edited")
    none = {"text_encoder_3": None, "tokenizer_3": None} if name == "sd3" else {}  # the tiny SD3 is saved without T5
    loaded = DiffusionPipeline.from_pretrained(str(folder), **none)
    family = {"flux-cfg": "flux", "flux2-klein-distilled": "flux2-klein"}.get(name, name)  # the same classes
    images = reloaded(folder, family, **none)(prompt=["a red circle"], num_inference_steps=2, output_type="np").images
    assert images.shape[0] == 1 and np.isfinite(images).all()  # stock diffusers samples the edited model
    first = next(iter(dict(loaded.transformer.named_parameters())))
    assert torch.equal(dict(cadiff.load_pipeline(folder).transformer.named_parameters())[first],
                       dict(loaded.transformer.named_parameters())[first])
    weights = dict(loaded.transformer.named_parameters())
    assert len(result.mask) > 0
    assert all((weights[n].detach().reshape(-1)[i] == 0).all() for n, i in result.mask.indices.items())
    before = dict(sd3.transformer.named_parameters())
    assert any((before[n].detach().reshape(-1)[i] != 0).any() for n, i in result.mask.indices.items())


def test_an_unsupported_denoiser_is_a_clear_error():
    with pytest.raises(ValueError, match=r"does not support the Linear denoiser yet; supported: "
                                         r"UNet2DConditionModel \(unet\), PixArtTransformer2DModel \(pixart\), "
                                         r"SD3Transformer2DModel \(sd3\), FluxTransformer2DModel \(flux\), "
                                         r"SanaTransformer2DModel \(sana\)"):
        adapter_for(torch.nn.Linear(2, 2))


def test_the_cli_erases_and_applies_on_a_transformer_and_says_what_sae_cannot_do_yet(sd3, tmp_path, capsys):
    from cadiff.cli import main

    sd3.save_pretrained(tmp_path / "model")
    fast = ["--model", str(tmp_path / "model"), "--steps", "2", "--seeds", "1"]
    assert main(["erase", "a red circle", "--method", "cad", "--components", "linear", "--ratio", "0.1", *fast,
                 "--out", str(tmp_path / "run")]) == 0
    assert main(["apply", str(tmp_path / "run" / "mask.safetensors"), "--model", str(tmp_path / "model"),
                 "--out", str(tmp_path / "applied")]) == 0
    a = (tmp_path / "run/pipeline/transformer/diffusion_pytorch_model.safetensors").read_bytes()
    assert a == (tmp_path / "applied/transformer/diffusion_pytorch_model.safetensors").read_bytes()


def test_sae_capture_and_steering_read_the_image_tokens_of_transformer_blocks(family, tmp_path):
    from cadiff.sae import collect_activations, hookpoints, steer, train_sae

    _, pipe = family
    last = hookpoints(pipe)[-1]
    store = collect_activations(pipe, ["a red circle", "a blue star"], [0, 1], tmp_path / "acts", hookpoints=(last,),
                                at_steps=[0, 2], steps=3, guidance=GUIDANCE)
    assert store.grid(last) == (4, 4) and store.channels(last) == 16
    assert next(store.activations(last, "cond")).shape == (2, 2, 16, 16)
    sae, metrics = train_sae(store, last, k=2, batch_size=16, expansion=2, holdout_shards=0)
    assert metrics["train_steps"] > 0 and metrics["l0"] == 2 and sae.metadata["grid"] == [4, 4]
    plain = cadiff.generate(pipe, ["a red circle"], [0], steps=3, guidance=GUIDANCE)
    with steer(pipe, sae, [0, 1], mode="global", beta=50.0, at_steps="all", steps=3):
        steered = cadiff.generate(pipe, ["a red circle"], [0], steps=3, guidance=GUIDANCE)
    assert (plain != steered).any()


@pytest.mark.parametrize("kind, blocks", [("sd3", "transformer_blocks"), ("cogview4", "transformer_blocks"),
                                          ("lumina2", "layers")])
def test_the_sae_commands_run_on_a_transformer(kind, blocks, tmp_path, capsys):
    from cadiff.cli import main
    from cadiff.models.loading import mark_model

    pipe = tiny_sd(kind)  # saved and loaded back as the stock pipeline class
    mark_model(pipe, {"world": "shapes", "num_inference_steps": 3, "guidance_scale": 4.0})  # labels and masks
    pipe.save_pretrained(tmp_path / "model")
    model = ["--model", str(tmp_path / "model")]
    capsys.readouterr()
    assert main(["sae", "hookpoints", *model]) == 0
    assert capsys.readouterr().out.split() == [f"{blocks}.0", f"{blocks}.1"]
    acts, sae = str(tmp_path / "acts"), str(tmp_path / "sae")
    assert main(["sae", "collect", *model, "--random-prompts", "16", "--shard-size", "8", "--hookpoints",
                 f"{blocks}.1", "--at-steps", "first,last", "--out", acts]) == 0
    from cadiff.sae import ActivationStore

    store = ActivationStore(acts)
    assert store.grid(f"{blocks}.1") == (4, 4) and store.channels(f"{blocks}.1") == 16
    assert main(["sae", "train", acts, "--k", "2", "--batch-size", "16", "--out", sae]) == 0
    assert main(["sae", "inspect", acts, "--sae", sae, "--out", str(tmp_path / "insp")]) == 0
    assert main(["sae", "steer", "a red circle", *model, "--sae", sae, "--latents", "0", "--mode", "spatial",
                 "--at-steps", "early", "-n", "2", "--beta", "50", "--out", str(tmp_path / "steer")]) == 0
    import json

    metrics = json.loads((tmp_path / "steer" / "metrics.json").read_text())
    assert "spatial_success" in metrics and metrics["change"] > 0  # steering moved the image


def test_prune_esd_and_the_magnitude_control_run_on_transformers(family):
    from cadiff.editing.methods.esd import ESDConfig
    from cadiff.editing.methods.magnitude import MagnitudeConfig
    from cadiff.editing.methods.prune import PruneConfig

    name, pipe = family
    if name == "sana":  # its feed-forward is convolutional: the pruning baseline reads Linear layers only
        with pytest.raises(ValueError, match="no Linear layer of the denoiser ends with 'ff.net.2'"):
            cadiff.erase(pipe, "a red circle", PruneConfig(sparsity=0.1, steps=2, seeds=1))
    else:  # a fifth of each row: enough for the concept's top inputs to differ from the empty prompt's on each
        pruned = cadiff.erase(pipe, "a red circle", PruneConfig(sparsity=0.2, steps=2, seeds=1))
        assert pruned.info["pruned_total"] == len(pruned.mask) > 0
        assert all(n.endswith(adapter_for(pipe.transformer).ff_out + ".weight") for n in pruned.mask.indices)
    control = cadiff.erase(pipe, "a red circle", MagnitudeConfig(components="ff", ratio=0.25))
    assert set(control.mask.indices) == set(select_parameters(pipe.transformer, "ff"))
    from cadiff.editing.methods.esd import esd_parameter_names

    net = pipe.transformer
    before = {k: v.detach().clone() for k, v in net.state_dict().items()}
    for variant in ("u", "x"):
        allowed = set(esd_parameter_names(net, variant))
        result = cadiff.erase(pipe, "a red circle", ESDConfig(variant=variant, iterations=2, lr=1e-2, steps=2))
        after = result.pipeline.transformer.state_dict()
        moved = {k for k, v in after.items() if not torch.equal(before[k], v)}
        assert allowed and moved and moved <= allowed, (variant, moved - allowed)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # the input model is kept
    cross = set(esd_parameter_names(net, "x"))
    assert cross.isdisjoint(esd_parameter_names(net, "u")) and all("attn" in n or "attention" in n for n in cross)


@pytest.mark.parametrize("kind", ["sd3", "flux-cfg", "qwenimage", "chroma", "flux2", "flux2-klein",
                                  "flux2-klein-distilled", "zimage", "lumina2", "cogview4", "hunyuanimage", "hidream"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_transformers_give_fp32_scores(kind, dtype):
    """fp16/bf16 weights give fp32 scores that rank the weights as the fp32 model's do: the half-precision run
    rounds every activation, so the scores agree in ranking, not in value."""
    pipe = tiny_sd(kind, dtype=dtype)
    attr = attribute(pipe, "a red circle", seeds=1, steps=2, guidance=GUIDANCE, progress=False)
    assert pipe.transformer.dtype == dtype and attr.metadata["dtype"] == str(dtype).replace("torch.", "")
    assert all(s.dtype == torch.float32 and torch.isfinite(s).all() for s in attr.scores.values())
    if kind == "cogview4":  # its tiny text encoder's states are so small (J ~ 2e-5) that the rounding outweighs them
        return
    full = attribute(tiny_sd(kind), "a red circle", seeds=1, steps=2, guidance=GUIDANCE, progress=False)
    half, exact = (torch.cat([a.scores[n].reshape(-1) for n in sorted(full.scores)]) for a in (attr, full))
    assert torch.corrcoef(torch.stack([half, exact]))[0, 1] > 0.9  # measured 0.96-1.00
    top = exact.numel() // 100  # the top 1 % that an erase zeroes: mostly the same weights (measured 84-100 %)
    overlap = set(half.topk(top).indices.tolist()) & set(exact.topk(top).indices.tolist())
    assert len(overlap) >= 0.75 * top


@pytest.mark.parametrize("kind", ["sd2", "sd3", "flux-cfg", "qwenimage", "chroma", "flux2", "flux2-klein",
                                  "flux2-klein-distilled", "zimage", "lumina2", "cogview4", "hunyuanimage", "hidream"])
def test_whole_attention_heads_are_scored_and_selected(kind):
    from cadiff.attribution.selection import head_scores, head_slices

    pipe = tiny_sd(kind)
    attr = attribute(pipe, "a red circle", components="attn", seeds=1, steps=2, guidance=GUIDANCE, progress=False)
    layout = {k: v for k, v in attr.metadata["heads"].items() if "#" not in k}  # fused slices: test_families
    assert layout and all(axis in (0, 1) for _, axis, _ in layout.values())
    sign = "positive" if max(head_scores(attr.scores, attr.metadata["heads"]).values()) > 0 else "negative"
    totals = head_scores(attr.scores, attr.metadata["heads"], sign)
    best = max(totals, key=totals.get)
    mask = attr.select(count=1, scope="head", sign=sign)
    for name, (module, axis, n) in layout.items():  # exactly the best head's slices, in every projection of it
        want = head_slices(tuple(attr.scores[name].shape), axis, n)[best[1]] if module == best[0] else None
        got = mask.indices.get(name)
        assert (got is None) if want is None else torch.equal(got, want.sort().values)
    summary = attr.summary()["heads"]
    assert len(summary) == len(totals) and f"{best[0]}/head{best[1]}" in summary
    with pytest.raises(ValueError, match="head layout"):
        attribute(pipe, "a red circle", components="ff", seeds=1, steps=2, progress=False).select(count=1,
                                                                                                   scope="head")


def test_flux_keeps_its_guidance_and_token_ids_for_the_erase_base_and_never_cuts_the_ids():
    from cadiff.attribution.estimators import erase_trajectory
    from cadiff.models.trace import conditioning

    pipe = tiny_sd("flux")
    net = pipe.transformer
    adapter = adapter_for(net)
    steps = erase_trajectory(pipe, net, [Row("a red circle", 0, 0)], 2, 3.5, base_prompt="a blue star")
    call = steps[0].kwargs
    assert float(call["guidance"].reshape(-1)[0]) == 3.5 and call["img_ids"].ndim == 2  # no batch cut from the ids
    base = conditioning(pipe, ["a blue star"])
    merged = adapter.base_kwargs(call, base)
    assert merged["guidance"] is call["guidance"] and merged["img_ids"] is call["img_ids"]
    assert torch.equal(merged["encoder_hidden_states"], base["encoder_hidden_states"])
    with torch.no_grad():
        want = adapter.forward(net, steps[0].sample, steps[0].timestep, merged)
    torch.testing.assert_close(steps[0].target, want)  # the base output: same latent, guidance and ids, other prompt


def test_amplify_with_concept_images_on_every_transformer(family, tmp_path):
    from PIL import Image

    _, pipe = family
    for i in range(2):
        Image.fromarray(cadiff.generate(pipe, ["a red circle"], [i], steps=2, guidance=GUIDANCE)[0]).save(
            tmp_path / f"{i}.png")
    attr = attribute(pipe, "a red circle", objective="amplify", images=tmp_path, steps=STEPS, guidance=GUIDANCE,
                     progress=False)
    assert attr.metadata["n_images"] == 2 and attr.metadata["J"] < 0
    assert sum(float(s.abs().sum()) for s in attr.scores.values()) > 0


def test_sae_capture_reads_the_token_grid_of_a_non_square_image(family, tmp_path):
    from cadiff.sae import ActivationCapture, hookpoints

    name, pipe = family
    if name == "hidream":
        pytest.skip("HiDream's pipeline renders every request at its default area, square here")
    last = hookpoints(pipe)[-1]
    # 16 x 32 pixels, or the multiples of 32 (Sana) or 64 (Lumina 2's 8x VAE and 2 x 2 patches) its tokens need
    size = {"sana": {"height": 32, "width": 64}, "lumina2": {"height": 64, "width": 128}}.get(
        name, {"height": 16, "width": 32})
    with ActivationCapture(pipe, [last], at_steps=[0]) as cap:
        cadiff.generate(pipe, ["a red circle"], [0], steps=2, guidance=GUIDANCE, **size)
    taken = cap.take()
    assert cap.grids[last] == (4, 8) and taken[(last, "cond")].shape[2] == 32  # 16 x 32 px -> 4 x 8 tokens


def test_amplify_evaluates_flux_at_its_own_guidance():
    from cadiff.attribution.estimators import amplify_samples, generated_latents

    pipe = tiny_sd("flux")
    rows = [Row("a red circle", 0, 0)]
    x0 = generated_latents(pipe, rows, 2, 3.5)
    steps = amplify_samples(pipe, pipe.transformer, rows, x0, 2, guidance=3.5)
    assert all(float(s.kwargs["guidance"].reshape(-1)[0]) == 3.5 for s in steps)  # distilled guidance: an input
    sd3 = tiny_sd("sd3")
    cond = amplify_samples(sd3, sd3.transformer, rows, generated_latents(sd3, rows, 2, 4.0), 2, guidance=4.0)
    assert cond[0].kwargs["encoder_hidden_states"].shape[0] == 1  # a guided-batch model: conditional half only
