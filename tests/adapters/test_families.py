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
from cadiff.models.loading import denoiser
from cadiff.models.trace import generators
from hand import assert_scores_equal, hand_scores
from tiny_pipelines import tiny_sd

STEPS, GUIDANCE = 3, 4.0
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
    "flux2-klein-distilled": {"guidance_scale": GUIDANCE},  # ignored: a step-distilled model is never guided
    "zimage": {"guidance_scale": GUIDANCE},  # on above 0: pos + 4 (pos - neg)
    "lumina2": {"guidance_scale": GUIDANCE},
    "cogview4": {"guidance_scale": GUIDANCE},
    "hunyuanimage": {"negative_prompt": ["", ""]},  # and its guider at scale 4: see `stock`
    "hidream": {"guidance_scale": GUIDANCE},
}
TRUE_CFG = ("flux-cfg", "qwenimage", "chroma", "flux2-klein", "lumina2", "cogview4", "hunyuanimage")


def stock(pipe, name, prompts, **call):
    """The stock pipeline call on `prompts` guided at scale 4 as a diffusers user writes it (HunyuanImage: its
    guider replaced by one at that scale)."""
    guided = {k: v[: len(prompts)] if isinstance(v, list) else v for k, v in STOCK[name].items()}
    guider = getattr(pipe, "guider", None)
    if name == "hunyuanimage":
        pipe.guider = guider.new(guidance_scale=GUIDANCE)
    try:
        return pipe(prompt=prompts, **guided, **call)
    finally:
        if guider is not None:
            pipe.guider = guider  # a second denoiser call per step, the conditional one first


@pytest.fixture(scope="module", params=sorted(STOCK))
def any_family(request):
    return request.param, tiny_sd(request.param)


@pytest.fixture(scope="module", params=TRUE_CFG)
def two_calls(request):
    return request.param, tiny_sd(request.param)


def test_generate_samples_each_family_as_its_stock_call_does(any_family):
    name, pipe = any_family
    ours = cadiff.generate(pipe, PROMPTS, seeds=[0, 1], steps=2, guidance=GUIDANCE)
    theirs = stock(pipe, name, PROMPTS, num_inference_steps=2, generator=generators([0, 1]), output_type="np").images
    np.testing.assert_array_equal(ours, (np.clip(theirs, 0, 1) * 255).round().astype(np.uint8))
    off = adapter_for(denoiser(pipe)).unguided(pipe, None)  # 1 for most, 0 for Z-Image
    unguided = cadiff.generate(pipe, PROMPTS, seeds=[0, 1], steps=2, guidance=off)
    assert (ours != unguided).any() or name == "flux2-klein-distilled"  # the guidance reached the sampler


NEW = ["flux-cfg", "qwenimage", "chroma", "flux2", "flux2-klein", "flux2-klein-distilled", "zimage", "lumina2",
       "cogview4", "hunyuanimage", "hidream"]


def _raw_calls(pipe, name, prompt, seed):
    """Every denoiser call of the stock call at GUIDANCE, its keywords and output, recorded by a plain hook."""
    calls = []

    def hook(module, args, kwargs, output):
        assert not args  # these pipelines pass everything by keyword
        calls.append(({k: v.detach().clone() if torch.is_tensor(v) else v for k, v in kwargs.items()},
                      output[0].detach().clone()))

    handle = pipe.transformer.register_forward_hook(hook, with_kwargs=True)
    try:
        stock(pipe, name, [prompt], num_inference_steps=STEPS, generator=generators([seed]), output_type="latent")
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
    names = sorted(attr.scores)[:2] + sorted(attr.scores)[-2:]
    pairs = list(zip(calls[0::2], calls[1::2]))  # (conditional call, unconditional call) of each step
    losses = [(net(**cond)[0] - uncond_out).pow(2).sum() for (cond, _), (_, uncond_out) in pairs]
    assert attr.metadata["J"] == pytest.approx(sum(float(loss.detach()) for loss in losses), rel=1e-4)
    assert_scores_equal(attr.scores, hand_scores(net, names, losses))
    assert all(attr.scores[n].abs().sum() > 0 for n in names[:2])  # the last block's text stream reaches no output


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


def _posterior_mode(monkeypatch, module):
    """Make a pipeline module's `retrieve_latents` take the posterior's mode, as cadiff's encoding does."""
    monkeypatch.setattr(module, "retrieve_latents", lambda out, generator=None, sample_mode="argmax":
                        out.latent_dist.mode())


@pytest.mark.parametrize("name", ["flux2", "flux2-klein", "qwenimage", "flux", "chroma", "zimage"])
def test_images_are_encoded_into_the_denoisers_latents_as_the_familys_own_image_to_image_pipeline_does(name,
                                                                                                   monkeypatch):
    """Amplify's concept images: the adapter's encoding equals the family's img2img encoding, packed as its
    sampler's latents are (the posterior's mode: the deterministic one)."""
    import diffusers.pipelines.flux.pipeline_flux_img2img as flux_i2i
    import diffusers.pipelines.qwenimage.pipeline_qwenimage_img2img as qwen_i2i
    from diffusers import FluxImg2ImgPipeline, QwenImageImg2ImgPipeline

    pipe = tiny_sd(name)
    images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    ours = adapter_for(pipe.transformer).encode_images(pipe, images)
    x = images * 2 - 1
    with torch.no_grad():
        if name.startswith("flux2"):
            own = pipe._pack_latents(pipe._encode_vae_image(x, generator=None))
        elif name == "qwenimage":
            _posterior_mode(monkeypatch, qwen_i2i)
            i2i = QwenImageImg2ImgPipeline(**pipe.components)
            z = i2i._encode_vae_image(x[:, :, None], generator=None)
            own = i2i._pack_latents(z, 2, z.shape[1], z.shape[-2], z.shape[-1])
        elif name == "zimage":  # its img2img latents before the noise is mixed in
            import diffusers.pipelines.z_image.pipeline_z_image_img2img as zimage_i2i

            _posterior_mode(monkeypatch, zimage_i2i)
            i2i = zimage_i2i.ZImageImg2ImgPipeline(**pipe.components)
            monkeypatch.setattr(i2i.scheduler, "scale_noise", lambda sample, timestep, noise: sample)
            own = i2i.prepare_latents(x, None, 2, pipe.transformer.in_channels, 16, 16, x.dtype, x.device, None)
        else:  # Flux.1 and Chroma share Flux's VAE scaling and 2 x 2 packing
            _posterior_mode(monkeypatch, flux_i2i)
            i2i = FluxImg2ImgPipeline(scheduler=pipe.scheduler, vae=pipe.vae, text_encoder=None, tokenizer=None,
                                      text_encoder_2=None, tokenizer_2=None, transformer=pipe.transformer)
            z = i2i._encode_vae_image(x, generator=None)
            own = i2i._pack_latents(z, 2, z.shape[1], z.shape[-2], z.shape[-1])
    torch.testing.assert_close(ours, own)


@pytest.mark.parametrize("name", ["flux", *NEW])
def test_amplify_reads_the_sampled_latents_in_the_denoisers_layout(name):
    """[klein] returns VAE-space latents for output_type='latent'; amplify puts them in the sampler's layout."""
    from cadiff.attribution.estimators import Row, generated_latents

    pipe = tiny_sd(name)
    x0 = generated_latents(pipe, [Row("a red circle", 0, 0)], 2, GUIDANCE)
    final = {}

    def keep(p, i, t, kwargs):
        final["latents"] = kwargs["latents"]
        return {}

    stock(pipe, name, ["a red circle"], num_inference_steps=2, generator=generators([0]), output_type="latent",
          callback_on_step_end=keep)
    torch.testing.assert_close(x0, final["latents"], rtol=1e-4, atol=1e-5)


def test_scores_equal_weight_times_gradient_by_hand_on_lists_with_the_conditional_half_first():
    """Z-Image: one call per step on lists, conditional rows first; the pipeline negates the output."""
    pipe = tiny_sd("zimage")
    attr = attribute(pipe, "a red circle", seeds=[3], steps=STEPS, guidance=GUIDANCE, components="linear",
                     progress=False)
    calls = []
    pipe.transformer.register_forward_hook(lambda m, args, kwargs, out: calls.append((args, out)), with_kwargs=True)
    pipe(prompt=["a red circle"], num_inference_steps=STEPS, generator=generators([3]), output_type="latent",
         guidance_scale=GUIDANCE)
    pipe.transformer._forward_hooks.clear()
    assert len(calls) == STEPS and all(len(args[0]) == 2 for args, _ in calls)
    net = pipe.transformer
    names = sorted(attr.scores)[:2]
    losses = [(-net([x[0]], t[:1], [caps[0]], return_dict=False)[0][0] - (-out[0][1].detach())).pow(2).sum()
              for (x, t, caps), out in calls]  # the conditional row against the unconditional, both negated
    assert_scores_equal(attr.scores, hand_scores(net, names, losses))
    assert all(attr.scores[n].abs().sum() > 0 for n in names)


def test_amplify_noises_on_the_schedule_the_pipeline_samples_on(any_family):
    """The clean latents amplify noises are put on the schedule (timesteps and sigmas) of the stock call."""
    from cadiff.attribution.estimators import Row, generated_latents

    name, pipe = any_family
    x0 = generated_latents(pipe, [Row("a red circle", 0, 0)], STEPS, GUIDANCE)
    stock(pipe, name, ["a red circle"], num_inference_steps=STEPS, generator=generators([0]), output_type="latent")
    scheduler = pipe.scheduler
    want = scheduler.timesteps.clone(), getattr(scheduler, "sigmas", torch.zeros(1)).clone()
    stock(pipe, name, ["a red circle"], num_inference_steps=STEPS + 2, output_type="latent")  # another schedule
    adapter_for(denoiser(pipe)).set_schedule(pipe, STEPS, x0)
    torch.testing.assert_close(scheduler.timesteps, want[0])
    torch.testing.assert_close(getattr(scheduler, "sigmas", torch.zeros(1)), want[1])


def test_scores_equal_weight_times_gradient_by_hand_on_a_doubled_batch_with_the_batch_second():
    """HiDream: one call per step on [unconditional, conditional] rows, its Llama states (layers, batch, ...) and
    its output negated by the pipeline; the routed experts, which get no gradient when sampling, are not scored."""
    pipe = tiny_sd("hidream")
    attr = attribute(pipe, "a red circle", seeds=[3], steps=STEPS, guidance=GUIDANCE, components="linear",
                     progress=False)
    assert attr.scores and not any(".ff_i.experts." in n or n.endswith("ff_i.gate") for n in attr.scores)
    calls = _raw_calls(pipe, "hidream", "a red circle", 3)
    assert len(calls) == STEPS
    net = pipe.transformer
    names = [n for n in sorted(attr.scores) if "shared_experts" in n][:1] + sorted(attr.scores)[:2]
    conditional = [{k: (v[:, 1:] if k == "encoder_hidden_states_llama3" else v[1:]) if torch.is_tensor(v) else v
                    for k, v in kwargs.items()} for kwargs, _ in calls]
    losses = [(-net(**cond)[0] - (-out[:1])).pow(2).sum() for cond, (_, out) in zip(conditional, calls)]
    assert_scores_equal(attr.scores, hand_scores(net, names, losses))
    assert all(attr.scores[n].abs().sum() > 0 for n in names)


@pytest.mark.parametrize("name", ["qwenimage", "chroma", "flux2", "flux2-klein", "zimage", "lumina2", "hidream",
                                  "hunyuanimage", "cogview4"])
def test_a_single_file_denoiser_loads_with_its_local_config_or_is_refused_where_diffusers_cannot(name, tmp_path):
    """A file holding the denoiser alone (in diffusers' names: diffusers converts other layouts itself) and the
    pipeline's folder as its config; HunyuanImage's and CogView4's denoisers have no single-file loader."""
    from safetensors.torch import save_file

    from cadiff.models.loading import ModelLoadError, load_pipeline

    pipe = tiny_sd(name)
    pipe.save_pretrained(tmp_path / "config")
    weights = {k: v.contiguous() for k, v in pipe.transformer.state_dict().items()}
    save_file(weights, str(tmp_path / "denoiser.safetensors"))
    kind = type(pipe.transformer).__name__
    if name in ("hunyuanimage", "cogview4"):
        with pytest.raises(ModelLoadError, match=f"diffusers cannot load a {kind} from a single file"):
            load_pipeline(tmp_path / "denoiser.safetensors", config=str(tmp_path / "config"))
        return
    loaded = load_pipeline(tmp_path / "denoiser.safetensors", config=str(tmp_path / "config"))
    assert type(loaded.transformer).__name__ == kind
    assert all(torch.equal(v, weights[k]) for k, v in loaded.transformer.state_dict().items())


@pytest.mark.parametrize("name", ["cogview4", "lumina2", "generic"])
def test_the_cli_runs_each_verb_on_a_saved_family_pipeline(name, tmp_path, capsys):
    """The stock pipeline classes saved and loaded back (CogView4 and Lumina 2, two calls a step; CogView3-Plus
    through the generic path): generate, attribute, erase, apply, and SAE hookpoints and the baselines (--method
    esd|prune|magnitude) where an adapter has them."""
    from cadiff.adapters import PROBED
    from cadiff.cli import main
    from tiny_pipelines import tiny_cogview3

    PROBED.clear()
    (tiny_cogview3() if name == "generic" else tiny_sd(name)).save_pretrained(tmp_path / "model")
    model = ["--model", str(tmp_path / "model")]
    fast = [*model, "--steps", "2", "--seeds", "1", "--components", "linear"]
    assert main(["generate", "a red circle", *model, "--steps", "2", "-n", "2", "--out", str(tmp_path / "g")]) == 0
    assert main(["attribute", "a red circle", *fast, "--out", str(tmp_path / "attr")]) == 0
    assert main(["erase", "a red circle", "--method", "cad", "--ratio", "0.1", *fast, "--out", str(tmp_path / "e")]) == 0
    assert main(["apply", str(tmp_path / "e" / "mask.safetensors"), *model, "--out", str(tmp_path / "applied")]) == 0
    a = (tmp_path / "e/pipeline/transformer/diffusion_pytorch_model.safetensors").read_bytes()
    assert a == (tmp_path / "applied/transformer/diffusion_pytorch_model.safetensors").read_bytes()
    from diffusers import DiffusionPipeline

    exported = DiffusionPipeline.from_pretrained(str(tmp_path / "e" / "pipeline"))  # stock diffusers samples it
    assert exported(prompt="a red circle", num_inference_steps=2, output_type="np").images.shape[-1] == 3
    if name != "generic":  # the baselines need a family's units (ESD's parameter sets, prune's ff layers)
        for method in (["esd", "--iterations", "1", "--steps", "2"], ["prune", "--seeds", "1", "--steps", "2"],
                       ["magnitude", "--ratio", "0.1"]):
            assert main(["erase", "a red circle", "--method", *method, *model, "--out", str(tmp_path / method[0])]) == 0
            assert (tmp_path / method[0] / "pipeline" / "transformer").is_dir()
    capsys.readouterr()
    if name == "generic":
        assert main(["sae", "hookpoints", *model]) == 2
        assert "reading SAE hookpoints needs an adapter for CogView3PlusTransformer2DModel" in capsys.readouterr().err
    else:
        assert main(["sae", "hookpoints", *model]) == 0
        assert capsys.readouterr().out.split()[0] in ("transformer_blocks.0", "layers.0")
    PROBED.clear()


@pytest.mark.parametrize("name", ["flux2", "flux", "chroma", "hunyuanimage"])
def test_fused_weights_are_selected_by_the_slices_their_group_holds(name):
    """FLUX.2's single blocks fuse q, k, v and the MLP input in one matrix (rows) and the attention and MLP outputs
    in another (columns); Flux.1's, Chroma's and HunyuanImage's fuse the outputs. 'attn' selects only attention
    slices of them, 'ff' only MLP slices, 'linear' the whole."""
    from cadiff.attribution import select_parameters
    from cadiff.editing.methods.magnitude import MagnitudeConfig, magnitude_mask

    pipe = tiny_sd(name)
    net = pipe.transformer
    fused = adapter_for(net).parts(net)
    assert fused and all(n in select_parameters(net, "attn") and n in select_parameters(net, "ff") for n in fused)
    shapes = {n: p.shape for n, p in net.named_parameters()}

    def inside(mask, group):
        """Every index mask puts in a fused weight lies in that weight's slices of `group`."""
        for param, idx in mask.indices.items():
            for part in fused.get(param, ()):
                cols = shapes[param][1]
                along = idx // cols if part.axis == 0 else idx % cols
                ok = [(along >= q.start) & (along < q.stop) for q in fused[param] if q.group == group]
                assert bool(torch.stack(ok).any(0).all()), (param, group)
        return mask

    for group in ("attn", "ff"):
        attr = attribute(pipe, "a red circle", seeds=1, steps=2, guidance=GUIDANCE, components=group, progress=False)
        keys = {k for k in attr.scores if "#" in k}
        assert keys and all(k.split("#")[0] in fused for k in keys) and not set(fused) & set(attr.scores)
        assert attr.metadata["n_components"] == sum(s.numel() for s in attr.scores.values())
        mask = inside(attr.select(ratio=0.5, scope="row"), group)
        assert set(mask.indices) & set(fused)  # the fused weights' slices are selectable
        inside(magnitude_mask(pipe, MagnitudeConfig(components=group, ratio=0.5)), group)
    linear = attribute(pipe, "a red circle", seeds=1, steps=2, guidance=GUIDANCE, components="linear", progress=False)
    assert set(fused) <= set(linear.scores)  # whole, under 'linear'


def test_a_head_of_a_fused_single_block_is_selected_across_its_query_key_value_and_output_slices():
    from cadiff.attribution.selection import head_scores

    pipe = tiny_sd("flux2")
    net = pipe.transformer
    attr = attribute(pipe, "a red circle", seeds=1, steps=2, guidance=GUIDANCE, components="attn", progress=False)
    block = "single_transformer_blocks.0.attn"
    totals = {key: v for key, v in head_scores(attr.scores, attr.metadata["heads"]).items() if key[0] == block}
    assert len(totals) == 2  # its two heads, each summed over its q, k, v rows and its output columns
    head = max(totals, key=totals.get)
    module = net.get_submodule(block)
    inner, width = module.inner_dim, module.inner_dim // module.heads
    cols_in, cols_out = module.to_qkv_mlp_proj.in_features, module.to_out.in_features
    mine = attr.select(count=len(totals) * 10, scope="head")  # every head with a positive sum
    rows = mine.indices[f"{block}.to_qkv_mlp_proj.weight"] // cols_in
    cols = mine.indices[f"{block}.to_out.weight"] % cols_out
    assert bool((rows < 3 * inner).all()) and bool((cols < inner).all())  # never the MLP's slices
    want = {h for (m, h), v in totals.items() if v > 0}
    assert set((rows % inner // width).tolist()) == want and set((cols // width).tolist()) == want
    assert head[1] in want



@pytest.mark.parametrize("name", NEW)
def test_the_calibrated_erase_runs_with_a_function_judge_on_each_family(name, tmp_path):
    """The search, screening and confirmation on each family's images, judged by a function (the target never
    seen, the rest always): the first setting meets the goal, and the run saves its certificate and mask."""
    import numpy as np

    from cadiff.calibration import calibrated_erase

    pipe = tiny_sd(name)
    fast = {"steps": 2, "seeds": 1, "guidance": GUIDANCE, "components": "attn", "scope": "matrix",
            "screen_repeats": 1, "screen_extra": 2, "confirm_repeats": 1, "confirm_max_repeats": 1}
    result = calibrated_erase(pipe, "a circle", preserve=["a star", "a square"],
                              judge=lambda images, c: np.zeros(len(images), bool) if c == "a circle"
                              else np.ones(len(images), bool), **fast)
    assert result.certificate.outcome == "met" and len(result.mask) > 0
    claims = result.certificate.confirmation.claims  # the judge's answers are what the certificate counts
    assert all(c.after.n > 0 and c.after.hits == (0 if c.kind == "target" else c.after.n) for c in claims)
    edited, original = (dict(denoiser(p).named_parameters()) for p in (result.pipeline, pipe))
    assert all((edited[n].detach().reshape(-1)[i] == 0).all() for n, i in result.mask.indices.items())
    assert any((original[n].detach().reshape(-1)[i] != 0).any() for n, i in result.mask.indices.items())
    result.save(tmp_path / "run")
    assert (tmp_path / "run" / "certificate.json").exists() and (tmp_path / "run" / "mask.safetensors").exists()


def test_grouped_query_keys_and_values_belong_to_no_one_head():
    """Lumina 2's keys and values have fewer heads than its queries, each shared by a group of them."""
    net = tiny_sd("lumina2").transformer
    layout = adapter_for(net).head_layout(net)
    assert any(k.endswith("attn.to_q.weight") for k in layout) and any(k.endswith("to_out.0.weight") for k in layout)
    assert not any(k.endswith(("attn.to_k.weight", "attn.to_v.weight")) for k in layout)


@pytest.mark.parametrize("name", ["flux2", "flux2-klein-distilled"])
def test_scores_equal_weight_times_gradient_by_hand_with_one_call_a_step(name):
    """FLUX.2 [dev] (guidance an input of the model) and [klein] distilled (no guidance at all): one call per step;
    the erase objective's base is the same call with the empty prompt's text (its embeddings and token ids), at the
    call's own guidance."""
    pipe = tiny_sd(name)
    attr = attribute(pipe, "a red circle", seeds=[3], steps=STEPS, guidance=GUIDANCE, components="linear",
                     progress=False)
    calls, empty = _raw_calls(pipe, name, "a red circle", 3), _raw_calls(pipe, name, "", 3)
    assert len(calls) == STEPS
    guidance = calls[0][0].get("guidance")
    assert float(guidance[0]) == GUIDANCE if name == "flux2" else guidance is None
    net = pipe.transformer
    names = sorted(attr.scores)[:2]
    empty_text = {"encoder_hidden_states": empty[0][0]["encoder_hidden_states"], "txt_ids": empty[0][0]["txt_ids"]}
    with torch.no_grad():
        bases = [net(**{**kwargs, **empty_text})[0] for kwargs, _ in calls]
    losses = [(net(**kwargs)[0] - base).pow(2).sum() for (kwargs, _), base in zip(calls, bases)]
    assert_scores_equal(attr.scores, hand_scores(net, names, losses))
    assert all(attr.scores[n].abs().sum() > 0 for n in names)


@pytest.mark.parametrize("name", ["sd1", "sd3", "flux", "qwenimage", "flux2", "zimage", "lumina2", "cogview4",
                                  "hidream"])
def test_gradient_checkpointing_and_host_accumulators_give_the_same_scores(name):
    """Recomputing the blocks' activations in the backward pass, or keeping the fp32 sums in host memory, changes
    the memory, not the scores."""
    pipe = tiny_sd(name)
    settings = dict(seeds=1, steps=2, guidance=GUIDANCE, components="linear", progress=False)
    plain = attribute(pipe, "a red circle", **settings)
    again = attribute(pipe, "a red circle", checkpointing=True, accumulators="cpu", **settings)
    assert not getattr(denoiser(pipe), "gradient_checkpointing", False)  # switched off again
    for n, s in plain.scores.items():
        torch.testing.assert_close(again.scores[n], s, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("name, why", [("chroma", "diffusers' checkpointed single blocks drop the attention mask"),
                                       ("hunyuanimage", "diffusers' checkpointed text refiner fails")])
def test_gradient_checkpointing_is_refused_where_it_would_change_the_scores(name, why):
    with pytest.raises(ValueError, match=f"gradient checkpointing would change .*'s scores \\({why}"):
        attribute(tiny_sd(name), "a red circle", seeds=1, steps=2, checkpointing=True, progress=False)


@pytest.mark.parametrize("name", NEW)
def test_the_cli_applies_a_mask_to_each_saved_family(name, tmp_path):
    """`cadiff apply` reads no image: every family's saved folder takes a mask, and the exported weights are the
    edited pipeline's."""
    from cadiff.cli import main

    pipe = tiny_sd(name)
    result = cadiff.erase(pipe, "a red circle", cadiff.CADConfig(components="linear", ratio=0.1, seeds=1, steps=2,
                                                                 guidance=GUIDANCE), progress=False)
    pipe.save_pretrained(tmp_path / "model")
    result.mask.save(tmp_path / "mask.safetensors")
    assert main(["apply", str(tmp_path / "mask.safetensors"), "--model", str(tmp_path / "model"),
                 "--out", str(tmp_path / "applied")]) == 0
    from safetensors.torch import load_file

    applied = load_file(str(tmp_path / "applied" / "transformer" / "diffusion_pytorch_model.safetensors"))
    edited = result.pipeline.transformer.state_dict()
    assert applied.keys() == edited.keys() and all(torch.equal(applied[k], edited[k]) for k in applied)


def test_the_trace_tells_steps_apart_on_schedules_that_repeat_a_timestep_and_in_bf16():
    """DPM-Solver++ with Karras sigmas repeats its last timesteps at 50 steps; FLUX.2 in bf16 passes timesteps 2^-8
    off. Each step is recorded once, in order."""
    from diffusers import DPMSolverMultistepScheduler

    from cadiff.models.trace import DenoiserTrace, sample

    pipe = tiny_sd("sd1")
    pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config, use_karras_sigmas=True)
    pipe.scheduler.set_timesteps(50)
    assert len(set(pipe.scheduler.timesteps.tolist())) < 50  # the schedule repeats a timestep
    for model in (pipe, tiny_sd("flux2", dtype=torch.bfloat16)):
        with DenoiserTrace(model, record=1) as trace:
            sample(model, ["a red circle"], generators([0]), 50, GUIDANCE)
        assert [s.index for s in trace.steps] == list(range(50))


def test_a_unet_with_a_guidance_embedding_is_not_split_into_branches():
    """LCM-style U-Nets (`time_cond_proj_dim`) take the guidance as an input: one call on the prompts' rows."""
    from diffusers import UNet2DConditionModel

    from cadiff.models.trace import DenoiserTrace, sample

    pipe = tiny_sd("sd1")
    pipe.register_modules(unet=UNet2DConditionModel.from_config(pipe.unet.config, time_cond_proj_dim=8))
    assert pipe.unet.config.time_cond_proj_dim == 8
    with DenoiserTrace(pipe, record=2) as trace:
        sample(pipe, PROMPTS, generators([0, 1]), 2, 7.5)
    assert len(trace.steps) == 2 and all(s.uncond_output is None and len(s.sample) == 2 for s in trace.steps)
    ours = cadiff.generate(pipe, PROMPTS, seeds=[0, 1], steps=2, guidance=7.5)
    theirs = pipe(prompt=PROMPTS, num_inference_steps=2, guidance_scale=7.5, generator=generators([0, 1]),
                  output_type="np").images
    np.testing.assert_array_equal(ours, (np.clip(theirs, 0, 1) * 255).round().astype(np.uint8))


def test_hunyuanimage_guides_prompts_with_quoted_text_at_the_asked_scale_too():
    """Quoted text switches the pipeline to its OCR guider: cadiff sets that one's scale as well."""
    from cadiff.models.generate import render

    pipe = tiny_sd("hunyuanimage")
    prompt = ['a "red" circle']  # quotes the shapes vocabulary does not know: rendered without the word check
    ours = render(pipe, prompt, [0], steps=2, guidance=2.0)
    guider, ocr = pipe.guider, pipe.ocr_guider
    pipe.guider, pipe.ocr_guider = guider.new(guidance_scale=2.0), ocr.new(guidance_scale=2.0)
    try:
        theirs = pipe(prompt=prompt, negative_prompt=[""], num_inference_steps=2, generator=generators([0]),
                      output_type="np").images
    finally:
        pipe.guider, pipe.ocr_guider = guider, ocr
    np.testing.assert_array_equal(ours, (np.clip(theirs, 0, 1) * 255).round().astype(np.uint8))


def test_a_distilled_hunyuanimage_keeps_its_guidance_and_step_inputs_in_the_erase_base(monkeypatch):
    """HunyuanImage-2.1-Distilled (a guidance embedding and per-step `timestep_r`, no guider): the erase
    objective's base replaces only what the prompt sets."""
    from diffusers import HunyuanImageTransformer2DModel

    from cadiff.attribution.estimators import Row, erase_trajectory

    init = HunyuanImageTransformer2DModel.__init__
    monkeypatch.setattr(HunyuanImageTransformer2DModel, "__init__",
                        lambda self, *a, **k: init(self, *a, **{**k, "guidance_embeds": True, "use_meanflow": True}))
    pipe = tiny_sd("hunyuanimage")
    pipe.guider = pipe.ocr_guider = None
    adapter = adapter_for(pipe.transformer)
    steps = erase_trajectory(pipe, pipe.transformer, [Row("a red circle", 0, 0)], 3, 3.25)
    for step in steps:
        base = adapter.base_kwargs(step.kwargs, {"encoder_hidden_states": 0, "guidance": 1, "timestep_r": 2})
        assert base["encoder_hidden_states"] == 0 and base["guidance"] is step.kwargs["guidance"]
        assert base["timestep_r"] is step.kwargs["timestep_r"]
        with torch.no_grad():
            assert not torch.equal(step.target, adapter.forward(pipe.transformer, step.sample, step.timestep,
                                                                step.kwargs))  # the base is another prompt's


def test_the_restart_estimator_runs_on_a_half_precision_model_whose_pipeline_keeps_fp32_latents():
    from cadiff.attribution.estimators import Row, erase_restart

    pipe = tiny_sd("zimage", dtype=torch.bfloat16)
    steps = erase_restart(pipe, pipe.transformer, [Row("a red circle", 0, 0)], 2, GUIDANCE)
    assert len(steps) == 2 and all(s.sample.dtype == torch.bfloat16 for s in steps)
