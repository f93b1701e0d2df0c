"""Watching the stock pipeline call through a forward hook on its denoiser: what went in, what came out.

With classifier-free guidance the pipeline calls the denoiser on a doubled batch, unconditional half first
(diffusers' convention for SD 1.x/2.x and SDXL). `split_guided` cuts every tensor of the call (sample,
encoder_hidden_states, SDXL's added_cond_kwargs text_embeds/time_ids, ...) into its two halves, so the
conditioning is reused exactly as the pipeline built it, never rebuilt.

Example:
    >>> from cadiff.attribution.recording import record_calls
    >>> with record_calls(pipe.unet, batch=2) as calls:                     # doctest: +SKIP
    ...     pipe(["a circle"] * 2, num_inference_steps=25, output_type="latent")
    >>> calls[0].sample.shape, calls[0].uncond_output.shape                  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import inspect
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import torch

from cadiff.adapters import adapter_for


@dataclass
class Call:
    """One denoiser call of a sampling loop, conditional branch kept apart from the unconditional one."""

    sample: torch.Tensor                  # denoiser input (the noisy latent) of the conditional branch
    timestep: torch.Tensor                # the timestep the pipeline passed (its conditional rows, if per row)
    kwargs: dict[str, Any]                # conditional-branch keyword arguments (encoder_hidden_states, ...)
    uncond_kwargs: dict[str, Any] | None  # unconditional-branch keyword arguments (None without guidance)
    uncond_output: torch.Tensor | None    # unconditional-branch output, the stop-gradient target (None without guidance)


def take_rows(obj: Any, rows: slice, n: int) -> Any:
    """Rows `rows` of every tensor in `obj` (nested dicts/lists) whose first dimension is `n`; others unchanged."""
    if isinstance(obj, torch.Tensor):
        return obj[rows] if obj.ndim > 0 and obj.shape[0] == n else obj
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
    if isinstance(obj, dict):
        return {k: repeat_rows(v, n) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(repeat_rows(v, n) for v in obj)
    return obj


def output_tensor(output: Any) -> torch.Tensor:
    """The prediction tensor of a denoiser output (tuple with return_dict=False, or an output dataclass)."""
    return output[0] if isinstance(output, (tuple, list)) else output.sample


def _named_call(module: torch.nn.Module, args: tuple, kwargs: dict) -> dict[str, Any]:
    """All arguments of a call by name (positional ones bound through the forward signature)."""
    bound = inspect.signature(module.forward).bind_partial(*args, **kwargs)
    return dict(bound.arguments)


def _clone(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().clone()
    if isinstance(obj, dict):
        return {k: _clone(v) for k, v in obj.items()}
    return obj


def split_guided(module: torch.nn.Module, args: tuple, kwargs: dict, output: Any, batch: int) -> Call:
    """Cut one denoiser call into conditional and unconditional halves (batch `batch` each, or no guidance)."""
    adapter = adapter_for(module)
    call = _named_call(module, args, kwargs)
    sample, timestep = call.pop(adapter.latent_arg), call.pop("timestep")
    call.pop("return_dict", None)
    n = sample.shape[0]
    out = adapter.prediction(module, output_tensor(output)) if output is not None else None
    if n == 2 * batch:
        cond, uncond = slice(batch, n), slice(0, batch)
        keep = adapter.unbatched()
        return Call(_clone(sample[cond]), _clone(take_rows(timestep, cond, n)), _clone(kwargs_rows(call, cond, n, keep)),
                    _clone(kwargs_rows(call, uncond, n, keep)), None if out is None else _clone(out[uncond]))
    if n != batch:
        raise RuntimeError(f"denoiser called on a batch of {n}, expected {batch} or {2 * batch}")
    return Call(_clone(sample), _clone(timestep), _clone(call), None, None)


@contextlib.contextmanager
def record_calls(module: torch.nn.Module, batch: int, on_call: Callable[[Call], None] | None = None) -> Iterator[list[Call]]:
    """Record every call of `module` (a denoiser run by the stock pipeline on `batch` prompts) while inside."""
    calls: list[Call] = []

    def hook(mod, args, kwargs, output):
        calls.append(split_guided(mod, args, kwargs, output, batch))
        if on_call is not None:
            on_call(calls[-1])

    handle = module.register_forward_hook(hook, with_kwargs=True)
    try:
        yield calls
    finally:
        handle.remove()


class _Captured(Exception):
    """Raised from a pre-hook to stop a pipeline call once its conditioning is known."""


def capture_conditioning(pipe, denoiser: torch.nn.Module, prompts: list[str], guidance: float | None = None
                         ) -> dict[str, Any]:
    """The denoiser keyword arguments the stock pipeline builds for `prompts` (no guided batch), without sampling.
    `guidance` reaches models whose guidance is an input rather than a batch (Flux-dev); others get 1.0."""
    found: dict[str, Any] = {}

    def pre_hook(mod, args, kwargs):
        call = _named_call(mod, args, kwargs)
        for key in (adapter_for(mod).latent_arg, "timestep", "return_dict"):
            call.pop(key, None)
        found.update(_clone(call))
        raise _Captured

    handle = denoiser.register_forward_pre_hook(pre_hook, with_kwargs=True)
    try:
        scale = 1.0 if guidance is None or adapter_for(denoiser).guided_batch(guidance) else guidance
        pipe(prompts, num_inference_steps=1, guidance_scale=scale, output_type="latent")
    except _Captured:
        pass
    finally:
        handle.remove()
    if not found:
        raise RuntimeError(f"{type(pipe).__name__} did not call its denoiser; cannot capture the conditioning")
    return found
