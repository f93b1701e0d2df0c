"""CAD scores on tiny random pipelines: equal to w * dJ/dw by hand, estimators agree, fp32 sums, preserve algebra."""

import math
import sys

import numpy as np
import pytest
import torch

from cadiff.attribution import Attribution, attribute, select_parameters
from cadiff.attribution.estimators import Row, erase_restart, erase_trajectory
from cadiff.attribution.gradients import accumulate
from tiny_pipelines import tiny_sd

STEPS, GUIDANCE = 3, 4.0
EPS32 = torch.finfo(torch.float32).eps


@pytest.fixture(scope="module")
def sd2():
    return tiny_sd("sd2")


def _hand_scores(pipe, prompt, seed, names):
    """w * dJ/dw with J = sum_t ||eps(z_t, c) - sg eps(z_t, '')||^2, the trajectory sampled by the stock call."""
    unet, sched = pipe.unet, pipe.scheduler
    shape = (1, 4, unet.config.sample_size, unet.config.sample_size)
    z_start = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
    latents = [z_start]

    def keep(p, i, t, kw):
        latents.append(kw["latents"].clone())
        return {}

    pipe(prompt, num_inference_steps=STEPS, guidance_scale=GUIDANCE, latents=z_start.clone(), output_type="latent",
         callback_on_step_end=keep)
    cond, uncond = pipe.encode_prompt(prompt, "cpu", 1, True, negative_prompt="")
    params = dict(unet.named_parameters())
    grads = {n: torch.zeros_like(params[n]) for n in names}
    for z, t in zip(latents, sched.timesteps):
        abar = sched.alphas_cumprod[int(t)]

        def eps(v):  # v-prediction output to epsilon
            return abar.sqrt() * v + (1 - abar).sqrt() * z

        with torch.no_grad():
            target = eps(unet(z, t, encoder_hidden_states=uncond).sample)
        out = eps(unet(z, t, encoder_hidden_states=cond).sample)
        loss = (out - target).pow(2).sum()
        for n, g in zip(names, torch.autograd.grad(loss, [params[n] for n in names])):
            grads[n] += g
    return {n: params[n].detach() * grads[n] for n in names}


def test_scores_equal_weight_times_gradient_by_hand(sd2):
    attr = attribute(sd2, "a red circle", seeds=[3], steps=STEPS, guidance=GUIDANCE, progress=False)
    names = sorted(attr.scores)[:2]
    hand = _hand_scores(sd2, "a red circle", 3, names)
    for n in names:
        assert attr.scores[n].dtype == torch.float32
        # backward matmuls round each entry at the scale of the largest products in its reduction, so the error
        # is a few ulps of the tensor's max, not of each entry
        torch.testing.assert_close(attr.scores[n], hand[n], rtol=1e-4, atol=256 * EPS32 * float(hand[n].abs().max()))
        assert attr.scores[n].abs().sum() > 0


def test_only_selected_parameters_get_gradients_and_flags_come_back(sd2):
    unet = sd2.unet
    before = {n: p.requires_grad for n, p in unet.named_parameters()}
    params = select_parameters(unet, "ff")
    steps = erase_trajectory(sd2, unet, [Row("a circle", 0, 0)], STEPS, GUIDANCE)
    seen = set()
    for name, p in unet.named_parameters():
        p.register_post_accumulate_grad_hook(lambda _p, name=name: seen.add(name))
    accumulate(unet, params, steps, {0: 1.0})
    assert seen == set(params)
    assert {n: p.requires_grad for n, p in unet.named_parameters()} == before
    assert all(p.grad is None for p in unet.parameters())


def test_trajectory_and_restart_estimators_agree(sd2):
    rows = [Row("a blue star", 5, 0), Row("a blue star", 6, 0)]
    traj = erase_trajectory(sd2, sd2.unet, rows, STEPS, GUIDANCE)
    own = erase_restart(sd2, sd2.unet, rows, STEPS, GUIDANCE, pair_previous=False)
    ref = erase_restart(sd2, sd2.unet, rows, STEPS, GUIDANCE)
    assert len(traj) == len(own) == len(ref) == STEPS
    for a, b in zip(traj, own):  # same latents, same timesteps, same targets
        torch.testing.assert_close(a.sample, b.sample)
        assert int(a.timestep) == int(b.timestep)
        torch.testing.assert_close(a.target, b.target, rtol=1e-4, atol=1e-5)
    for i in range(1, STEPS):  # the reference pairs the latent after i steps with the timestep of step i
        torch.testing.assert_close(ref[i - 1].sample, traj[i].sample)
        assert int(ref[i - 1].timestep) == int(traj[i - 1].timestep)
    params = select_parameters(sd2.unet, "ff")
    g_traj, j_traj = accumulate(sd2.unet, params, traj, {0: 0.5})
    g_own, j_own = accumulate(sd2.unet, params, own, {0: 0.5})
    assert math.isclose(j_traj[0], j_own[0], rel_tol=1e-4)
    for n in params:
        # backward matmuls round at the scale of the tensor's largest entries: a few ulps of its max
        torch.testing.assert_close(g_traj[0][n], g_own[0][n], rtol=1e-3,
                                   atol=256 * EPS32 * float(g_own[0][n].abs().max()))


@pytest.mark.parametrize("objective,estimator", [("erase", "trajectory"), ("erase", "restart"), ("amplify", "trajectory")])
def test_step_windows_add_up_to_all_steps(sd2, objective, estimator):
    kw = dict(objective=objective, estimator=estimator, seeds=[2], steps=STEPS, guidance=GUIDANCE, progress=False)
    full = attribute(sd2, "a red circle", **kw)
    first, rest = attribute(sd2, "a red circle", at_steps=[0], **kw), attribute(sd2, "a red circle", at_steps="1,2", **kw)
    assert full.metadata["at_steps"] == "all" and first.metadata["at_steps"] == [0] and rest.metadata["at_steps"] == [1, 2]
    assert math.isclose(first.metadata["J"] + rest.metadata["J"], full.metadata["J"], rel_tol=1e-4)
    one, two = (attribute(sd2, "a red circle", at_steps=[i], **kw) for i in (1, 2))  # for the rounding scale only
    for n in full.scores:
        # steps' gradients are computed identically, only the sum's order differs: ~7 roundings of eps/2 at
        # sum_t |w g_t| (not |first| + |rest|: steps 1 and 2 can cancel in `rest`, not in (g0 + g1) + g2)
        a, b = first.scores[n], rest.scores[n]
        scale = a.abs() + one.scores[n].abs() + two.scores[n].abs()
        assert ((a + b - full.scores[n]).abs() <= 4 * EPS32 * scale).all(), n
        assert not torch.equal(first.scores[n], full.scores[n])


def test_an_early_window_ends_the_trajectory_early(sd2):
    calls = []
    handle = sd2.unet.register_forward_hook(lambda *a: calls.append(1))
    try:
        erase_trajectory(sd2, sd2.unet, [Row("a circle", 0, 0)], STEPS, GUIDANCE, only={0})
    finally:
        handle.remove()
    assert len(calls) == 1  # one guided call (step 0), then the pipeline call is interrupted


def test_preserve_score_is_target_minus_mean_of_preserve(sd2):
    kw = dict(seeds=[0, 1], steps=STEPS, guidance=GUIDANCE, progress=False)
    contrast = attribute(sd2, "a circle", preserve=["a square", "a star"], **kw)
    target, sq, st = attribute(sd2, ["a circle", "a square", "a star"], **kw)
    for n in contrast.scores:
        # the keep group is one 4-row backward against two 2-row ones, then (sq + st) / 2 cancels against the
        # target: rounding at the scale of the operands before the cancellation
        scale = float((target.scores[n].abs() + (sq.scores[n].abs() + st.scores[n].abs()) / 2).max())
        torch.testing.assert_close(contrast.scores[n], target.scores[n] - (sq.scores[n] + st.scores[n]) / 2,
                                   rtol=0, atol=256 * EPS32 * scale)
    assert contrast.metadata["preserve"] == ["a square", "a star"]


def test_guard_rule_subtracts_the_largest_positive_preserve_score(sd2):
    """The guard rule is each concept scored alone, folded: exactly the target's score less, per weight, the
    largest positive score of a concept to keep (same sums in the same order, so equal bit for bit)."""
    kw = dict(seeds=[0, 1], steps=STEPS, guidance=GUIDANCE, progress=False)
    guarded = attribute(sd2, "a circle", preserve=["a square", "a star"], preserve_rule="guard", **kw)
    target, sq, st = (attribute(sd2, c, **kw) for c in ("a circle", "a square", "a star"))
    for n in guarded.scores:
        keep = torch.maximum(sq.scores[n].clamp(min=0), st.scores[n].clamp(min=0))
        assert torch.equal(guarded.scores[n], target.scores[n] - keep), n
    assert guarded.metadata["preserve_rule"] == "guard"
    assert guarded.metadata["J_preserve"] == [sq.metadata["J"], st.metadata["J"]]
    assert target.metadata["preserve_rule"] is None


def test_relative_rule_is_the_guard_on_scores_in_shares_of_each_concepts_J(sd2):
    kw = dict(seeds=[0, 1], steps=STEPS, guidance=GUIDANCE, progress=False)
    relative = attribute(sd2, "a circle", preserve=["a square", "a star"], preserve_rule="relative", **kw)
    target, sq, st = (attribute(sd2, c, **kw) for c in ("a circle", "a square", "a star"))
    own, sq_share, st_share = ({n: s * (1.0 / a.metadata["J"]) for n, s in a.scores.items()}
                               for a in (target, sq, st))
    for n in relative.scores:
        keep = torch.maximum(sq.scores[n].clamp(min=0) * (1.0 / sq.metadata["J"]),
                             st.scores[n].clamp(min=0) * (1.0 / st.metadata["J"]))
        assert torch.equal(relative.scores[n], own[n] - keep), n
        assert torch.equal(keep, torch.maximum(sq_share[n], st_share[n]).clamp(min=0))
    assert relative.metadata["preserve_rule"] == "relative"
    assert relative.metadata["J_preserve"] == [sq.metadata["J"], st.metadata["J"]]
    # not the plain guard: the concepts' Js differ, so the two rules rank weights differently
    assert not math.isclose(sq.metadata["J"], st.metadata["J"], rel_tol=1e-3)


def test_groups_taken_one_call_at_a_time_equal_the_joint_call(sd2):
    rows = [Row("a circle", 0, 0), Row("a square", 0, 1), Row("a star", 1, 2)]
    steps = erase_trajectory(sd2, sd2.unet, rows, STEPS, GUIDANCE)
    params = select_parameters(sd2.unet, "ff")
    joint, j_joint = accumulate(sd2.unet, params, steps, {0: 1.0, 1: 1.0, 2: 1.0})
    for g in range(3):
        alone, j_alone = accumulate(sd2.unet, params, steps, {g: 1.0})
        assert set(alone) == {g} and math.isclose(j_alone[g], j_joint[g], rel_tol=1e-5)
        for n in params:
            torch.testing.assert_close(alone[g][n], joint[g][n], rtol=1e-4, atol=1e-7)


def test_guard_holds_one_preserve_gradient_at_a_time(sd2, monkeypatch):
    module = sys.modules["cadiff.attribution.attribute"]  # the module, not the function of the same name
    calls = []

    def spy(unet, params, samples, weights, **kw):
        calls.append(sorted(weights))
        return accumulate(unet, params, samples, weights, **kw)

    monkeypatch.setattr(module, "accumulate", spy)
    attribute(sd2, "a circle", preserve=["a square", "a star", "a heart"], preserve_rule="guard", seeds=[0],
              steps=STEPS, guidance=GUIDANCE, progress=False)
    assert calls == [[0]] * 4  # the target, then each concept to keep alone: one gradient group per pass


@pytest.mark.parametrize("kwargs, message", [
    (dict(preserve=["a star"], preserve_rule="max"), "preserve_rule must be one of mean, guard, relative"),
    (dict(preserve_rule="guard"), "needs concepts to keep"),
])
def test_bad_preserve_rule_is_refused(sd2, kwargs, message):
    with pytest.raises(ValueError, match=message):
        attribute(sd2, "a circle", progress=False, **kwargs)


def test_fp16_model_sums_in_fp32():
    pipe16, pipe32 = tiny_sd("sd1", dtype=torch.float16), tiny_sd("sd1")
    kw = dict(seeds=[0], steps=2, guidance=GUIDANCE, progress=False)
    a16, a32 = attribute(pipe16, "a circle", **kw), attribute(pipe32, "a circle", **kw)
    assert a16.metadata["dtype"] == "float16"
    x = torch.cat([a16.scores[n].reshape(-1) for n in a16.scores])
    y = torch.cat([a32.scores[n].reshape(-1) for n in a32.scores])
    assert x.dtype == torch.float32 and torch.isfinite(x).all()
    assert np.corrcoef(x.numpy(), y.numpy())[0, 1] > 0.9


def test_amplify_on_generated_and_on_real_images(sd2, tmp_path):
    from PIL import Image

    gen = attribute(sd2, "a circle", objective="amplify", seeds=2, steps=STEPS, guidance=GUIDANCE, progress=False)
    assert gen.metadata["J"] < 0 and gen.metadata["objective"] == "amplify"
    for i in range(2):
        Image.fromarray(np.full((20, 20, 3), 40 * i, np.uint8)).save(tmp_path / f"{i}.png")
    real = attribute(sd2, "a circle", objective="amplify", images=tmp_path, steps=STEPS, progress=False)
    assert real.metadata["n_images"] == 2 and real.metadata["J"] < 0
    assert any(s.abs().sum() > 0 for s in real.scores.values())


def test_image_folder_errors(sd2, tmp_path):
    with pytest.raises(ValueError, match="holds no images"):
        attribute(sd2, "a circle", objective="amplify", images=tmp_path, progress=False)
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="cannot read image"):
        attribute(sd2, "a circle", objective="amplify", images=tmp_path, progress=False)
    with pytest.raises(NotADirectoryError):
        attribute(sd2, "a circle", objective="amplify", images=tmp_path / "missing", progress=False)


def test_bad_inputs_are_clear_errors(sd2):
    with pytest.raises(ValueError, match="unknown word 'teal'"):
        attribute(sd2, "a teal circle", progress=False)
    with pytest.raises(ValueError, match="selects no parameter"):
        attribute(sd2, "a circle", components="no_such_weight", progress=False)
    with pytest.raises(ValueError, match="objective"):
        attribute(sd2, "a circle", objective="forget", progress=False)
    with pytest.raises(ValueError, match="both a target and a concept to keep; remove"):
        attribute(sd2, "a circle", preserve=["a circle"], progress=False)
    with pytest.raises(ValueError, match="is empty"):
        attribute(sd2, ["a circle", " "], progress=False)
    with pytest.raises(ValueError, match="which is the base prompt"):
        attribute(sd2, "a circle", base_prompt=" a circle", progress=False)
    with pytest.raises(ValueError, match="'a circle' is given twice"):
        attribute(sd2, ["a circle", "a  circle"], progress=False)
    with pytest.raises(ValueError, match="cannot read step 'soon'"):
        attribute(sd2, "a circle", at_steps="soon", steps=STEPS, progress=False)
    with pytest.raises(ValueError, match="outside the schedule of 3 steps"):
        attribute(sd2, "a circle", at_steps=[3], steps=STEPS, progress=False)


def test_save_load_summary_plot(sd2, tmp_path):
    attr = attribute(sd2, "a circle", seeds=1, steps=2, guidance=GUIDANCE, progress=False)
    path = attr.save(tmp_path / "a.attr.safetensors")
    back = Attribution.load(path, sd2)
    assert back.metadata == attr.metadata
    for n in attr.scores:
        assert torch.equal(back.scores[n], attr.scores[n])
    s = attr.summary()
    assert s["n"] == sum(v.numel() for v in attr.scores.values())
    assert s["n_positive"] + s["n_negative"] <= s["n"]
    assert 0 < s["concentration"]["top_0.1%"] <= s["concentration"]["top_1%"] <= 1
    assert sum(v["mass_positive"] for v in s["layers"].values()) == pytest.approx(s["mass_positive"], rel=1e-4)
    assert attr.plot(tmp_path / "a.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="was made with model"):
        Attribution.load(path, tiny_sd("sd2", seed=1))
    with pytest.raises(FileExistsError):
        attr.save(path)


def test_a_new_objective_is_one_registered_class(sd2, monkeypatch):
    from cadiff.attribution.objectives import OBJECTIVES, register_objective
    from cadiff.attribution.objectives.erase import Erase

    @register_objective
    class Keep(Erase):  # the erase distance with the opposite sign: what keeps the concept scores positive
        name = "keep-test"
        sign = -1.0
        select_sign = "negative"

    monkeypatch.setitem(OBJECTIVES, Keep.name, Keep)  # removed again after the test
    kw = dict(seeds=1, steps=STEPS, guidance=GUIDANCE, progress=False)
    erase, keep = attribute(sd2, "a circle", **kw), attribute(sd2, "a circle", objective="keep-test", **kw)
    assert keep.metadata["objective"] == "keep-test" and keep.metadata["J"] == pytest.approx(-erase.metadata["J"])
    for name in erase.scores:
        torch.testing.assert_close(keep.scores[name], -erase.scores[name])
    with pytest.raises(ValueError, match="unknown objective 'forget'; choose from erase, amplify, keep-test"):
        attribute(sd2, "a circle", objective="forget", **kw)


def test_amplify_refuses_an_estimator_it_does_not_have(sd2):
    with pytest.raises(ValueError, match="has the estimator"):
        attribute(sd2, "a circle", objective="amplify", estimator="restart", progress=False)


def test_during_the_backward_the_other_components_wait_in_host_memory(monkeypatch):
    """On a GPU, the text encoders and the VAE leave it for the backward passes (they are done once the trajectories
    are sampled) and come back after. (Here the GPU is pretended: the components say they are on one.)"""
    import importlib

    loading = importlib.import_module("cadiff.models.loading")
    attribute_module = importlib.import_module("cadiff.attribution.attribute")
    pipe = tiny_sd("sd1")
    gpu = torch.device("cuda", 0)
    others = {id(pipe.text_encoder): "text_encoder", id(pipe.vae): "vae"}
    monkeypatch.setattr(loading, "_accelerator_of", lambda module: gpu if id(module) in others else None)
    moves = []
    for name in others.values():
        monkeypatch.setattr(getattr(pipe, name), "to", lambda device, name=name: moves.append((name, str(device))))
    during = []
    accumulate_now = attribute_module.accumulate

    def accumulate_watched(*args, **kwargs):
        during.append(list(moves))
        return accumulate_now(*args, **kwargs)

    monkeypatch.setattr(attribute_module, "accumulate", accumulate_watched)
    attribute(pipe, "a red circle", seeds=1, steps=2, progress=False)
    assert [sorted(m) for m in during] == [[("text_encoder", "cpu"), ("vae", "cpu")]]
    assert sorted(moves[2:]) == [("text_encoder", "cuda:0"), ("vae", "cuda:0")]
