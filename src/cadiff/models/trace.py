"""The denoiser trace: the one layer between cadiff and a pipeline's sampling loop.

Every consumer — `generate`, the objectives' estimators, gradients, SAE capture and steering, prune, ESD, the
token attack — sees sampling as steps of (latent, timestep, conditional call, unconditional call or none). How a
family's pipeline makes those calls is its adapter's to say (`DenoiserAdapter.call_kwargs`, `.layout`,
`.bind_call`): one doubled batch in either order, two calls in either order, or one call. Nothing outside the
adapters names a guidance keyword or passes a prompt positionally.

- `sample(pipe, prompts, generators, steps, guidance, ...)`: the one stock pipeline call, optionally ended after
  a step; while it runs, the layout of its denoiser calls is known to every trace on that denoiser.
- `DenoiserTrace(pipe)`: while inside, `trace.current` says which step the denoiser call in progress belongs to
  and which rows of its batch are which branch; with `record=n`, `trace.steps` holds every step's conditional
  input and the unconditional branch's input and output, as the pipeline built them.
- `conditioning(pipe, prompts, guidance)`: the conditional keyword arguments the pipeline builds, without sampling.
The trace checks itself: a step whose calls do not fit the adapter's layout is an error, never a silent misreading.

Example:
    >>> with DenoiserTrace(pipe, record=2) as trace:                         # doctest: +SKIP
    ...     sample(pipe, ["a circle", "a square"], generators(2), steps=25, guidance=4.0)
    >>> len(trace.steps), trace.steps[0].uncond_output.shape                 # doctest: +SKIP
"""

from __future__ import annotations

import inspect
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch

from cadiff.adapters import DenoiserAdapter, Layout, Rows, UnknownDenoiser, adapter_for
from cadiff.models.loading import denoiser as denoiser_of


@dataclass
class TracedStep:
    """One sampling step's denoiser input, conditional branch kept apart from the unconditional one."""

    sample: torch.Tensor                  # the denoiser input (noisy latent) of the conditional branch
    timestep: torch.Tensor                # the timestep the pipeline passed (its conditional rows, if per row)
    kwargs: dict[str, Any]                # conditional-branch keyword arguments (encoder_hidden_states, ...)
    uncond_kwargs: dict[str, Any] | None  # unconditional-branch keyword arguments (None without guidance)
    uncond_output: torch.Tensor | None    # unconditional-branch prediction, the stop-gradient target (or None)
    index: int = 0                        # the sampling step (0 = first)


@dataclass
class CurrentCall:
    """The denoiser call in progress: its sampling step, the rows of its batch per branch, its image-token grid."""

    step: int
    parts: dict[str, slice]               # branch ('cond' / 'uncond') -> rows of this call's batch
    grid: tuple[int, int] | None = None


def take_rows(obj: Any, rows: slice, n: int) -> Any:
    """Rows `rows` of every tensor in `obj` (nested dicts/lists) whose first dimension is `n`; others unchanged."""
    if isinstance(obj, torch.Tensor):
        return obj[rows] if obj.ndim > 0 and obj.shape[0] == n else obj
    if isinstance(obj, Rows):
        return Rows(obj[rows]) if len(obj) == n else obj
    if isinstance(obj, dict):
        return {k: take_rows(v, rows, n) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(take_rows(v, rows, n) for v in obj)
    return obj


def kwargs_rows(kwargs: dict[str, Any], rows: slice, n: int, keep: tuple[str, ...] = ()) -> dict[str, Any]:
    """`take_rows` of a denoiser call's keyword arguments, leaving those named in `keep` (no batch dimension) whole."""
    return {k: v if k in keep else take_rows(v, rows, n) for k, v in kwargs.items()}


def repeat_rows(obj: Any, n: int) -> Any:
    """Repeat batch-1 tensors of `obj` (nested) to batch `n`."""
    if isinstance(obj, torch.Tensor):
        return obj.expand(n, *obj.shape[1:]) if obj.ndim > 0 and obj.shape[0] == 1 else obj
    if isinstance(obj, Rows):
        return Rows(list(obj) * n) if len(obj) == 1 else obj
    if isinstance(obj, dict):
        return {k: repeat_rows(v, n) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(repeat_rows(v, n) for v in obj)
    return obj


def output_tensor(output: Any) -> torch.Tensor:
    """The prediction tensor of a denoiser output (tuple with return_dict=False, or an output dataclass)."""
    return output[0] if isinstance(output, (tuple, list)) else output.sample


def clone(obj: Any) -> Any:
    """A detached copy of the tensors in `obj` (nested dicts, lists, tuples)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().clone()
    if isinstance(obj, dict):
        return {k: clone(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(clone(v) for v in obj)
    return obj


def generators(seeds: Sequence[int]) -> list[torch.Generator]:
    """CPU generators, so a seed walks the same trajectory on any device."""
    return [torch.Generator().manual_seed(int(s)) for s in seeds]


@dataclass(eq=False)
class _Run:
    """One `sample` call in progress: the layout of its denoiser calls and the prompts it samples (compared by
    identity, so a trace can tell one run from the next)."""

    layout: Layout
    rows: int


# The sampling call in progress, per denoiser (set by `sample`, read by every trace on it)
_ACTIVE: "weakref.WeakKeyDictionary[torch.nn.Module, _Run]" = weakref.WeakKeyDictionary()


def _active_run(pipe) -> _Run | None:
    return _ACTIVE.get(denoiser_of(pipe))


def active_layout(pipe) -> Layout:
    """The layout of `pipe`'s denoiser calls: that of the `sample` call in progress, else what the adapter reads
    off a pipeline called directly (its guidance attributes)."""
    run = _active_run(pipe)
    return run.layout if run is not None else adapter_for(denoiser_of(pipe)).layout(pipe, None)


class _Stopped(Exception):
    """Raised from a legacy step callback to end a pipeline call early."""


def _takes_step_end_callback(pipe) -> bool:
    """Whether the pipeline's call has diffusers' `callback_on_step_end` (PixArt-α's has only the legacy one)."""
    return any("callback_on_step_end" in inspect.signature(cls.__call__).parameters
               for cls in type(pipe).__mro__ if "__call__" in vars(cls))


def sample(pipe, prompts: Sequence[str], generator: list[torch.Generator], steps: int, guidance: float,
           output_type: str = "latent", until: int | None = None, **extra) -> Any:
    """The stock pipeline call on `prompts` at the family's own guidance (the adapter's keywords), one generator
    per prompt. With `until`, the call ends after that step (diffusers' documented `_interrupt` flag, or the
    legacy per-step callback) and the latents reached then are returned; otherwise the pipeline's output."""
    net = denoiser_of(pipe)
    try:
        adapter = adapter_for(net)
    except UnknownDenoiser:  # a model no adapter knows, not probed: diffusers' standard keywords, nothing traced
        adapter = None
    call = {**(adapter or DenoiserAdapter()).call_kwargs(pipe, list(prompts), guidance), "num_inference_steps": steps,
            "generator": generator, "output_type": output_type, **extra}
    if adapter is None:
        return _call(pipe, call, until)
    previous = _ACTIVE.get(net)
    _ACTIVE[net] = _Run(adapter.layout(pipe, guidance), len(prompts))
    try:
        with adapter.call_context(pipe, guidance):
            return _call(pipe, call, until)
    finally:
        if previous is None:
            _ACTIVE.pop(net, None)
        else:
            _ACTIVE[net] = previous


def _call(pipe, call: dict[str, Any], until: int | None) -> Any:
    """The pipeline call, ended after step `until` when given (returning the latents reached then)."""
    if until is None:
        return pipe(**call)
    state: dict[str, torch.Tensor] = {}
    if _takes_step_end_callback(pipe):
        def on_step_end(p, index, t, kwargs):
            if index >= until and "latents" not in state:  # a pipeline that ignores the flag samples on
                state["latents"] = kwargs["latents"].detach().clone()
                p._interrupt = True
            return {}

        pipe(**call, callback_on_step_end=on_step_end)
    else:
        def legacy(index, t, latents):
            if index >= until:
                state["latents"] = latents.detach().clone()
                raise _Stopped

        try:
            pipe(**call, callback=legacy, callback_steps=1)
        except _Stopped:
            pass
    return state.get("latents")


class DenoiserTrace:
    """While inside: `current` describes the denoiser call in progress; with `record` (the number of prompts the
    pipeline samples), `steps` collects every step's conditional input and unconditional input and output.
    `on_step(traced)` is called as each recorded step completes."""

    def __init__(self, pipe, record: int | None = None, on_step: Callable[[TracedStep], None] | None = None):
        self.pipe, self.batch, self.on_step = pipe, record, on_step
        self.net = denoiser_of(pipe)
        self.adapter = adapter_for(self.net)
        self.current: CurrentCall | None = None
        self.steps: list[TracedStep] = []
        self._seen: dict[int, int] = {}            # step -> denoiser calls seen at it, in the current run
        self._pending: dict[int, dict[str, Any]] = {}
        self._run: tuple[_Run | None, int] = (None, -1)  # the run the calls seen belong to, and its last step
        self._handles: list = []

    def _candidates(self, timestep) -> list[int]:
        """The steps of the scheduler's schedule whose timestep, as the denoiser sees it, is the one passed, within
        the precision it was passed in (a bf16 timestep is 2^-8 off)."""
        value = torch.as_tensor(timestep).reshape(-1)[0]
        t = float(value)
        schedule = self.adapter.model_timestep(self.pipe.scheduler.timesteps.double().cpu())
        eps = torch.finfo(value.dtype).eps if value.is_floating_point() else 0.0
        tolerance = max(4 * eps, 1e-6) * max(1.0, abs(t))
        return [int(i) for i in ((schedule - t).abs() <= tolerance).nonzero().flatten()]

    def _pre_hook(self, module, args, kwargs) -> None:
        latent, timestep, _ = self.adapter.bind_call(module, args, kwargs)
        run, layout = _active_run(self.pipe), active_layout(self.pipe)
        candidates = self._candidates(timestep)
        if not candidates:
            raise RuntimeError(f"timestep {float(torch.as_tensor(timestep).reshape(-1)[0])} is not in the "
                               "scheduler's schedule; cannot tell the sampling step")
        # The step is the first candidate after the last step seen in this run (schedules can repeat a timestep),
        # or the last one again while its calls are not all made
        new_run = run is not self._run[0]
        last = -1 if new_run else self._run[1]
        per_step = 1 if layout.split == "batch" else len(layout.order)
        later = [c for c in candidates if c > last]
        if last in candidates and self._seen.get(last, 0) < per_step:
            step = last
        elif later:
            step = later[0]
        elif run is not None and not new_run:
            step = last  # one call more at the step just made, which the layout check below refuses
        else:  # back at the start: a new pipeline call made directly
            step, new_run = candidates[0], True
        if new_run:
            self._flush()
            self._seen = {}
        elif step != last:
            self._flush()  # a step whose unconditional call never came (guidance truncated late in the run)
        self._run = (run, step)
        n = self.adapter.batch_size(latent)
        if run is not None and n != run.rows * (len(layout.order) if layout.split == "batch" else 1):
            raise RuntimeError(f"{type(self.pipe).__name__} called its denoiser on {n} rows for {run.rows} prompts, "
                               f"which its adapter's layout ({self.adapter.name}: {layout.split} "
                               f"{'/'.join(layout.order)}) does not explain")
        k = self._seen.get(step, 0)
        self._seen[step] = k + 1
        if layout.split == "calls":
            if k >= len(layout.order):
                raise RuntimeError(f"{type(self.pipe).__name__} called its denoiser {k + 1} times at step {step}, "
                                   f"but its adapter ({self.adapter.name}) expects {len(layout.order)} per step")
            parts = {layout.order[k]: slice(None)}
        else:
            share = n // len(layout.order)
            if share * len(layout.order) != n:
                raise RuntimeError(f"the denoiser batch of {n} does not split into the {len(layout.order)} guidance "
                                   f"branches its adapter ({self.adapter.name}) expects")
            parts = {b: slice(i * share, (i + 1) * share) for i, b in enumerate(layout.order)}
        self.current = CurrentCall(step, parts, self.adapter.token_grid(module, args, kwargs))

    def _hook(self, module, args, kwargs, output) -> None:
        latent, timestep, cond = self.adapter.bind_call(module, args, kwargs)
        n = self.adapter.batch_size(latent)
        current = self.current
        keep = self.adapter.unbatched()
        pending = self._pending.setdefault(current.step, {})
        for branch, rows in current.parts.items():
            whole = rows == slice(None)
            part = {"sample": latent if whole else take_rows(latent, rows, n),
                    "timestep": timestep if whole else take_rows(timestep, rows, n),
                    "kwargs": cond if whole else kwargs_rows(cond, rows, n, keep)}
            if branch == "uncond":
                out = self.adapter.prediction(module, self.adapter.output_of(output))
                part["output"] = out if whole else take_rows(out, rows, n)
            rows_n = self.adapter.batch_size(part["sample"])
            if rows_n != self.batch:
                raise RuntimeError(f"denoiser called on {rows_n} rows per branch, expected {self.batch}")
            pending[branch] = clone(part)
        if set(pending) == set(active_layout(self.pipe).order):
            self._complete(current.step)

    def _complete(self, step: int) -> None:
        parts = self._pending.pop(step)
        cond, uncond = parts["cond"], parts.get("uncond")
        traced = TracedStep(cond["sample"], cond["timestep"], cond["kwargs"], None if uncond is None else uncond["kwargs"],
                            None if uncond is None else uncond["output"], step)
        self.steps.append(traced)
        if self.on_step is not None:
            self.on_step(traced)

    def _flush(self) -> None:
        """Record the steps whose calls ended with the conditional one (their unconditional branch skipped)."""
        for step in sorted(self._pending):
            if "cond" in self._pending[step]:
                self._complete(step)
        self._pending = {}

    def __enter__(self) -> "DenoiserTrace":
        self._handles = [self.net.register_forward_pre_hook(self._pre_hook, with_kwargs=True)]
        if self.batch is not None:
            self._handles.append(self.net.register_forward_hook(self._hook, with_kwargs=True))
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []
        if exc[0] is None:
            self._flush()


class _Captured(Exception):
    """Raised from a pre-hook to stop a pipeline call once its conditioning is known."""


def conditioning(pipe, prompts: list[str], guidance: float | None = None) -> dict[str, Any]:
    """The conditional denoiser keyword arguments the stock pipeline builds for `prompts`, without sampling. Where
    guidance is an input of the model rather than a second branch (a distilled guidance embedding), `guidance`
    reaches it; the branches themselves are off."""
    net = denoiser_of(pipe)
    adapter = adapter_for(net)
    found: dict[str, Any] = {}

    def pre_hook(mod, args, kwargs):
        found.update(clone(adapter.bind_call(mod, args, kwargs)[2]))
        raise _Captured

    handle = net.register_forward_pre_hook(pre_hook, with_kwargs=True)
    try:
        # two steps: a one-step schedule can be degenerate (a terminal shift divides by zero); the call stops at
        # the first denoiser call either way
        sample(pipe, prompts, generators(range(len(prompts))), 2, adapter.unguided(pipe, guidance))
    except _Captured:
        pass
    finally:
        handle.remove()
    if not found:
        raise RuntimeError(f"{type(pipe).__name__} did not call its denoiser; cannot capture the conditioning")
    return found
