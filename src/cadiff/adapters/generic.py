"""A denoiser no family adapter knows: what the erase objective needs of it, found by watching its pipeline.

`probe(pipe, denoiser, prompt, base_prompt)` runs the stock pipeline twice for two sampling steps from the same seed, once
with the concept's prompt and once with the base prompt, recording every denoiser call. From the two runs it
finds the noisy latent (the tensor the two runs share at the first call, shaped like the output), the timestep
(shared, and on the scheduler's schedule as t, t / 1000 or 1 - t / 1000), the conditioning (what differs between
the runs) and the guidance layout (a doubled batch and which half is conditional, or a second call per step and
which call is). It checks itself before any score is used — replaying a recorded call through the adapter
reproduces its output, and the runs differ in the conditioning only — and refuses in one line where it cannot
tell. Erase attribution, the plain erase, apply and export then work; what needs the family's units or layout
(component groups other than 'linear', heads, amplify, ESD, SAE hookpoints) says it needs an adapter.

Example:
    >>> adapter = probe(pipe, pipe.transformer, "a red circle", "")   # doctest: +SKIP
    >>> adapter.name, adapter.layout(pipe, 4.0)             # doctest: +SKIP
    ('generic', Layout(split='batch', order=('uncond', 'cond')))
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

import torch

from cadiff.adapters import UNGUIDED, DenoiserAdapter, Layout
from cadiff.errors import BadInput

PROBE_STEPS, PROBE_GUIDANCE = 2, 4.0
TIME_MAPS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "t": lambda t: t, "t/1000": lambda t: t / 1000, "1-t/1000": lambda t: 1 - t / 1000}


class NeedsAdapter(BadInput):
    """What the generic path cannot do: it needs the family's adapter."""


class GenericAdapter(DenoiserAdapter):
    """The erase objective's view of an unknown denoiser, as `probe` found it."""

    name = "generic"
    denoisers = ()
    block = r"\.\d+\."  # weights inside a numbered block (a ModuleList)
    ff = attn = cross_attention = text_input = esd_frozen = r"(?!)"

    def __init__(self, latent_arg: str, timestep_arg: str, time_map: str, guided: Layout,
                 prompt_keys: tuple[str, ...], denoiser: str):
        self.latent_arg, self.timestep_arg, self.time_map = latent_arg, timestep_arg, time_map
        self.guided, self.prompt_keys, self.denoiser = guided, prompt_keys, denoiser

    def layout(self, pipe, guidance):
        return self.guided if guidance is None or guidance > 1.0 else UNGUIDED

    def model_timestep(self, timestep):
        return TIME_MAPS[self.time_map](timestep)

    def forward(self, denoiser, latent, timestep, kwargs):
        if timestep.ndim == 0:
            timestep = timestep.expand(latent.shape[0])
        extra = {"return_dict": False} if "return_dict" in inspect.signature(denoiser.forward).parameters else {}
        out = denoiser(**{self.latent_arg: latent, self.timestep_arg: timestep}, **kwargs, **extra)
        return self.output_of(out)

    def output_of(self, output):
        return _prediction(output)

    def output_scale(self, scheduler, timestep):
        return 1.0  # the model's own units: nothing is known of them

    def in_group(self, name, param, group):
        if group in ("ff", "attn", "text"):
            raise NeedsAdapter(f"the '{group}' group needs an adapter for {self.denoiser} (its weights' roles are "
                               "unknown to the generic path); use --components linear or all, or write one "
                               "(one file in cadiff/adapters)")
        return super().in_group(name, param, group)

    def head_layout(self, denoiser):
        return {}  # unknown: selecting heads says the model has no head layout

    def _needs(self, what: str):
        raise NeedsAdapter(f"{what} needs an adapter for {self.denoiser}; the generic path does the erase "
                           "objective, the plain erase, apply and export")

    def noised(self, scheduler, x0, noise, index):
        self._needs("the amplify objective")

    def set_schedule(self, pipe, steps, x0):
        self._needs("the amplify objective")

    def encode_images(self, pipe, images):
        self._needs("reading concept images")

    def image_size(self, pipe, denoiser):
        self._needs("reading concept images")

    def hookpoints(self, denoiser):
        self._needs("reading SAE hookpoints")

    def describe(self) -> dict[str, Any]:
        """What the probe found, for a result's record."""
        return {"adapter": "generic", "latent": self.latent_arg, "timestep": f"{self.timestep_arg} ({self.time_map})",
                "guidance": f"{self.guided.split} {'/'.join(self.guided.order)}", "conditioning": list(self.prompt_keys)}


def _prediction(output):
    """The prediction of an unknown denoiser's output: itself, the first of a tuple, or its `.sample` (None)."""
    if isinstance(output, torch.Tensor):
        return output
    return output[0] if isinstance(output, (tuple, list)) else getattr(output, "sample", None)


def _record(pipe, net, prompt: str) -> list[tuple[dict[str, Any], torch.Tensor]]:
    """Every denoiser call (arguments by name, cloned, and its output) of a two-step stock call from seed 0."""
    calls = []
    signature = inspect.signature(net.forward)

    def hook(module, args, kwargs, output):
        named = dict(signature.bind_partial(*args, **kwargs).arguments)
        named.pop("return_dict", None)
        out = _prediction(output)
        calls.append(({k: v.detach().clone() if isinstance(v, torch.Tensor) else v for k, v in named.items()},
                      out.detach().clone() if isinstance(out, torch.Tensor) else out))

    if "guidance_scale" not in inspect.signature(type(pipe).__call__).parameters:
        raise NeedsAdapter(f"{type(pipe).__name__} takes no guidance_scale; the generic path cannot guide it")
    handle = net.register_forward_hook(hook, with_kwargs=True)
    try:
        with torch.no_grad():
            pipe(prompt=[prompt], num_inference_steps=PROBE_STEPS, guidance_scale=PROBE_GUIDANCE,
                 generator=[torch.Generator().manual_seed(0)], output_type="latent")
    finally:
        handle.remove()
    return calls


def _same(a, b) -> bool:
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return False
    return a == b


def probe(pipe, net: torch.nn.Module, prompt: str, base_prompt: str = "") -> GenericAdapter:
    """The generic adapter of `pipe`'s denoiser `net`, found from two recorded runs (see the module); NeedsAdapter
    naming what it could not tell."""
    kind = type(net).__name__
    refuse = lambda why: NeedsAdapter(f"cadiff has no adapter for {kind} and the generic path cannot use it: {why}")  # noqa: E731
    if prompt == base_prompt:
        raise BadInput("the generic path compares the concept's prompt with the base prompt: they must differ")
    runs = [_record(pipe, net, text) for text in (prompt, base_prompt)]
    calls = len(runs[0])
    if calls != len(runs[1]) or calls not in (PROBE_STEPS, 2 * PROBE_STEPS):
        raise refuse(f"it called its denoiser {calls} times for {PROBE_STEPS} steps (one or two a step expected)")
    per_step = calls // PROBE_STEPS
    (first, out), (first_base, _) = runs[0][0], runs[1][0]
    if not isinstance(out, torch.Tensor):
        raise refuse("its output is not a tensor")
    tensors = [k for k, v in first.items() if isinstance(v, torch.Tensor)]
    latent = [k for k in tensors if first[k].shape == out.shape and _same(first[k], first_base[k])]
    if len(latent) != 1:
        raise refuse("no single input shaped like its output is shared by two runs from the same seed "
                     f"(candidates: {', '.join(latent) or 'none'})")
    latent = latent[0]
    found = _timestep(pipe, runs[0], per_step, latent)
    if found is None:
        raise refuse("no input matches the scheduler's timesteps as t, t/1000 or 1-t/1000")
    timestep, time_map = found
    differ = [k for k in first if k not in (latent, timestep) and not _same(first[k], first_base[k])]
    layout, cond_call = _layout(runs, per_step, differ, out.shape[0])
    if layout is None:
        raise refuse("the prompt reaches none of its inputs, or reaches both guidance branches")
    adapter = GenericAdapter(latent, timestep, time_map, layout, tuple(differ), kind)
    _check_replay(adapter, net, runs[0][cond_call])
    return adapter


def _timestep(pipe, calls, per_step: int, latent: str) -> tuple[str, str] | None:
    """The input that carries the timestep, and how it maps the scheduler's timesteps."""
    schedule = pipe.scheduler.timesteps.double().cpu()
    for name, value in calls[0][0].items():
        if name == latent or not isinstance(value, torch.Tensor) or value.numel() == 0:
            continue
        seen = [c[0][name] for c in calls[::per_step]]
        if any(not isinstance(v, torch.Tensor) or v.numel() != value.numel() for v in seen):
            continue
        values = torch.stack([v.reshape(-1)[0].double().cpu() for v in seen])
        for label, mapping in TIME_MAPS.items():
            if len(schedule) == len(values) and torch.allclose(mapping(schedule), values, rtol=1e-3, atol=1e-4):
                return name, label
    return None


def _layout(runs, per_step: int, differ: list[str], batch: int) -> tuple[Layout | None, int]:
    """The guidance layout and the index of a conditional call, from where the two runs differ."""
    if not differ:
        return None, 0
    if per_step == 2:  # two calls a step: the conditional one is where the prompt shows
        shows = [any(not _same(runs[0][i][0][k], runs[1][i][0][k]) for k in differ) for i in (0, 1)]
        if shows == [True, False]:
            return Layout("calls", ("cond", "uncond")), 0
        if shows == [False, True]:
            return Layout("calls", ("uncond", "cond")), 1
        return None, 0
    if batch == 1:
        return UNGUIDED, 0
    if batch != 2:
        return None, 0
    halves = []
    for rows in (slice(0, 1), slice(1, 2)):
        halves.append(any(isinstance(runs[0][0][0][k], torch.Tensor) and runs[0][0][0][k].shape[:1] == (2,)
                          and not _same(runs[0][0][0][k][rows], runs[1][0][0][k][rows]) for k in differ))
    if halves == [False, True]:
        return Layout("batch", ("uncond", "cond")), 0
    if halves == [True, False]:
        return Layout("batch", ("cond", "uncond")), 0
    return None, 0


def _check_replay(adapter: GenericAdapter, net, call) -> None:
    """A recorded call replayed through the adapter reproduces its output: the inputs were read right."""
    named, out = call
    latent, timestep = named[adapter.latent_arg], named[adapter.timestep_arg]
    kwargs = {k: v for k, v in named.items() if k not in (adapter.latent_arg, adapter.timestep_arg)}
    with torch.no_grad():
        again = adapter.forward(net, latent, timestep, kwargs)
    if again.shape != out.shape or not torch.allclose(again.float(), out.float(), rtol=1e-4, atol=1e-5):
        raise NeedsAdapter(f"cadiff has no adapter for {type(net).__name__} and the generic path cannot use it: "
                           "replaying a recorded call did not reproduce its output")
