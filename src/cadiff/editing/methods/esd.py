"""ESD, Erasing Concepts from Diffusion Models (Gandikota et al., ICCV 2023): fine-tune a copy of the denoiser so
that, for the concept prompt c, it predicts the frozen model's output guided *away* from c:

    eps_new(z_t, t, c)  <-  eps(z_t, t, "") - eta * (eps(z_t, t, c) - eps(z_t, t, ""))

z_t comes from sampling the model being trained with prompt c (guidance 3) for a random number of steps, as the
paper's code does (here the denoiser's input at that step, recorded from the stock pipeline call, stopped early).
ESD-u trains every parameter except cross-attention, the output layers and the time embedding (the paper's choice
for objects and nudity); ESD-x trains only cross-attention (for styles). On MMDiTs (SD3, Flux), whose attention is
joint, "cross-attention" is the text stream's projections (add_q/k/v_proj, to_add_out). The same target works for
v-prediction and flow models: the output is affine in eps for a fixed z_t, so the guided combination carries over
(for flow models, in velocity units).

Example:
    >>> import cadiff
    >>> result = cadiff.erase(cadiff.load_pipeline(), "circle", method="esd", iterations=100, lr=3e-4)   # doctest: +SKIP
"""

from __future__ import annotations

import copy
import re
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from cadiff.adapters import adapter_for
from cadiff.attribution.concepts import Concepts
from cadiff.editing.copies import with_denoiser
from cadiff.editing.methods import EditMethod, EditRequest, register_method
from cadiff.editing.result import EditResult
from cadiff.errors import BadInput
from cadiff.config import Config, option
from cadiff.models.loading import denoiser

VARIANTS = ("u", "x")


@dataclass(frozen=True)
class FineTuneConfig(Config):
    """How ESD's objective fine-tunes a denoiser (the defaults are the paper's: 1,000 iterations, lr 1e-5, eta 1,
    start guidance 3); shared by ESD and by the methods that train only where CAD points."""

    iterations: int = option(1000, "ESD fine-tuning iterations (default 1000, the paper's)", low=1)
    lr: float = option(1e-5, "ESD learning rate (default 1e-5, the paper's)")
    negative_guidance: float = option(1.0, "ESD's eta: how far the target is guided away from the concept "
                                           "(default 1)")
    start_guidance: float = option(3.0, "ESD: guidance of the sampling that reaches z_t (default 3)")
    steps: int | None = option(None, "sampling steps (default: the model's)", low=1)
    seed: int = option(0, "ESD: seed of the timesteps and noise it trains on (default 0)")

    def __post_init__(self):
        if self.iterations < 1 or self.lr <= 0:
            raise BadInput("ESD needs iterations >= 1 and lr > 0")


@dataclass(frozen=True)
class ESDConfig(FineTuneConfig):
    """ESD settings; the defaults are the paper's (ESD-u, 1,000 iterations, lr 1e-5, eta 1, start guidance 3)."""

    variant: str = option("u", "ESD variant: u trains all but cross-attention, output conv and time embedding "
                               "(objects, nudity; default), x only cross-attention (styles)", choices=VARIANTS)

    def __post_init__(self):
        FineTuneConfig.__post_init__(self)
        if self.variant not in VARIANTS:
            raise BadInput(f"unknown ESD variant '{self.variant}'; use 'u' (objects, nudity) or 'x' (styles)")


def esd_parameter_names(net: torch.nn.Module, variant: str) -> list[str]:
    """Names of the parameters ESD-x ('x': cross-attention) or ESD-u ('u': the rest, less the output layers and the
    time embedding) fine-tunes, as the denoiser's adapter names them (U-Nets: attn2, conv_out, time_embedding)."""
    if variant not in VARIANTS:
        raise BadInput(f"unknown ESD variant '{variant}'; use 'u' (objects, nudity) or 'x' (styles)")
    adapter = adapter_for(net)
    names = []
    for name, _ in net.named_parameters():
        cross = re.search(adapter.cross_attention, name) is not None
        excluded = cross or re.search(adapter.esd_frozen, name) is not None
        if (variant == "x" and cross) or (variant == "u" and not excluded):
            names.append(name)
    return names


def esd(pipe, concept: str | Concepts, config: ESDConfig | None = None,
        on_iteration: Callable[[int, Any], None] | None = None) -> tuple[Any, dict[str, Any]]:
    """Fine-tune a copy of `pipe`'s denoiser with ESD to erase `concept`; return (new pipeline, info); `pipe` is
    kept. See `fine_tune`; ESD-u / ESD-x choose the parameters trained (`esd_parameter_names`)."""
    config = config or ESDConfig()
    names = esd_parameter_names(denoiser(pipe), config.variant)
    edited, info = fine_tune(pipe, concept, config, {n: None for n in names}, on_iteration=on_iteration)
    return edited, {"method": f"esd-{config.variant}", **info}


def fine_tune(pipe, concept: str | Concepts, config: FineTuneConfig, trained: dict[str, torch.Tensor | None],
              keep_prompts: Sequence[str] = (), keep_weight: float = 0.0,
              on_iteration: Callable[[int, Any], None] | None = None) -> tuple[Any, dict[str, Any]]:
    """ESD's fine-tuning of a copy of `pipe`'s denoiser; return (new pipeline, info); `pipe` is kept.

    `trained`: the parameters trained, by name, each whole (None) or only where its boolean mask is True (the other
    entries get no gradient, so Adam leaves them exactly as they were). Each iteration samples the model being
    trained (prompt `concept`, guidance `start_guidance`) up to a random step k through the stock pipeline call,
    takes the denoiser's input there, and regresses the student's output for the concept onto the frozen model's
    output guided away from it (in the model's own units: noise for U-Nets and PixArt, velocity for SD3 and Flux).
    With `keep_prompts`, each iteration also samples the next of them to step k and adds `keep_weight` times the
    distance of the student's output there from the frozen model's: what to keep stays as it was. The student stays
    in inference mode, as it samples (HiDream's training mode changes its output's layout). `on_iteration(i,
    edited)` is called after each iteration."""
    from cadiff.models.loading import resolve_sampling
    from cadiff.models.trace import DenoiserTrace, conditioning, generators, sample

    seed = config.seed
    if not isinstance(concept, Concepts):  # ESD guides away from the empty prompt
        concept = Concepts.on(pipe, [concept], base_prompt="")
    concept, prompt = concept.targets[0], concept.prompts[0]
    steps, _ = resolve_sampling(pipe, config.steps)
    frozen = denoiser(pipe).eval().requires_grad_(False)
    adapter = adapter_for(frozen)
    student = copy.deepcopy(frozen)
    params = []
    for name, p in student.named_parameters():
        p.requires_grad_(name in trained)
        if name in trained:
            params.append(p)
            if trained[name] is not None:
                where = trained[name].to(p.device, p.dtype)
                p.register_hook(lambda grad, where=where: grad * where)
    edited = with_denoiser(pipe, student)
    empty = conditioning(pipe, [""])  # for pipelines that call no unconditional branch
    rng = np.random.default_rng(seed)
    optimizer = torch.optim.Adam(params, lr=config.lr)

    def reached(prompt_: str, k: int, it: int):
        """The denoiser's call at step k of the student's sampling of `prompt_`, as the pipeline built it."""
        with DenoiserTrace(edited, record=1) as trace:
            sample(edited, [prompt_], generators([seed * 1_000_003 + it]), steps, config.start_guidance, until=k)
        return trace.steps[k]

    losses = []
    started = time.perf_counter()
    for it in tqdm(range(config.iterations), desc=f"fine-tune '{concept}'", unit="it", leave=False):
        k = int(rng.integers(0, steps))
        with torch.no_grad():
            call = reached(prompt, k, it)
            uncond = call.uncond_kwargs if call.uncond_kwargs is not None else adapter.base_kwargs(call.kwargs, empty)
            e_empty = adapter.forward(frozen, call.sample, call.timestep, uncond)
            e_concept = adapter.forward(frozen, call.sample, call.timestep, call.kwargs)
            target = e_empty - config.negative_guidance * (e_concept - e_empty)
            if keep_prompts:
                kept = reached(keep_prompts[it % len(keep_prompts)], k, it)
                kept_target = adapter.forward(frozen, kept.sample, kept.timestep, kept.kwargs)
        out = adapter.forward(student, call.sample, call.timestep, call.kwargs)
        loss = torch.nn.functional.mse_loss(out.float(), target.float())
        if keep_prompts:
            kept_out = adapter.forward(student, kept.sample, kept.timestep, kept.kwargs)
            loss = loss + keep_weight * torch.nn.functional.mse_loss(kept_out.float(), kept_target.float())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.detach().item())
        if on_iteration is not None:
            on_iteration(len(losses), edited)
    student.eval().requires_grad_(False)
    info = {"concept": concept, "prompt": prompt, "seed": seed, **asdict(config), "steps": steps,
            "trained_parameters": sorted(trained),
            "trained_elements": int(sum(p.numel() if trained[n] is None else int(trained[n].sum())
                                        for n, p in student.named_parameters() if n in trained)),
            "loss_first": round(float(np.mean(losses[:10])), 6) if losses else None,
            "loss_last": round(float(np.mean(losses[-10:])), 6) if losses else None,
            "seconds": round(time.perf_counter() - started, 3)}
    return edited, info


@register_method
class ESD(EditMethod):
    name = "esd"
    summary = "ESD (Gandikota et al. 2023): fine-tune the denoiser away from the concept (baseline)"
    config_class = ESDConfig
    takes_preserve = False
    concepts_at_once = 1

    def run(self, pipe, request: EditRequest) -> EditResult:
        concepts = request.concepts
        edited, info = esd(pipe, concepts, self.config)
        return EditResult(edited, self.name, request.objective, list(concepts.targets), [], self.config, info=info,
                          seconds=info["seconds"], base=pipe)
