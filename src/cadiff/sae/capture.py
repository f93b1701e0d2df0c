"""Reading hookpoint activations during sampling: per step, conditional and unconditional branch apart.

Forward hooks on the hookpoint modules record the residual update (output - input, the default) or the output,
as (images, positions, channels). The step index comes from the scheduler: a pre-hook on the denoiser reads the
timestep the pipeline passes and looks it up in `pipe.scheduler.timesteps`, so guidance batching, extra denoiser
calls or skipped steps cannot shift it. Under classifier-free guidance the stock pipelines batch [uncond, cond];
the halves are kept apart as branches 'uncond' and 'cond' (without guidance there is only 'cond').

Example:
    >>> from cadiff.sae import ActivationCapture
    >>> with ActivationCapture(pipe, ["mid_block.attentions.0"], at_steps=[0, 12, 24]) as cap:   # doctest: +SKIP
    ...     pipe(["a red circle"], num_inference_steps=25)
    >>> cap.take()[("mid_block.attentions.0", "cond")].shape                                   # doctest: +SKIP
    torch.Size([1, 3, 16, 128])
"""

from __future__ import annotations

from collections import defaultdict
from typing import Sequence

import torch

from cadiff.adapters import adapter_for
from cadiff.errors import BadInput
from cadiff.models.generate import GUIDED_ATTRIBUTE
from cadiff.models.loading import denoiser
from cadiff.sae.hookpoints import resolve_hookpoint

READOUTS = ("update", "output")


def split_branches(pipe, batch: torch.Tensor) -> dict[str, torch.Tensor]:
    """{'uncond': first half, 'cond': second half} under classifier-free guidance, else {'cond': batch}. Pipelines
    that do not expose whether they guide (PixArt-α) are told by `cadiff.generate` (`GUIDED_ATTRIBUTE`)."""
    guided = getattr(pipe, "do_classifier_free_guidance", None)
    if guided is None:
        guided = getattr(pipe, GUIDED_ATTRIBUTE, False)
    if guided:
        if batch.shape[0] % 2:
            raise RuntimeError(f"guidance is on but the denoiser batch has odd size {batch.shape[0]}; "
                               "this pipeline does not batch [uncond, cond] like the stock ones")
        uncond, cond = batch.chunk(2)
        return {"uncond": uncond, "cond": cond}
    return {"cond": batch}


class StepTracker:
    """Knows the current sampling step of `pipe` from the timestep passed to its denoiser."""

    def __init__(self, pipe):
        self.pipe = pipe
        self.step: int | None = None
        self.grid: tuple[int, int] | None = None  # the image-token grid of the current denoiser call (DiTs)
        self._handle = None

    def _pre_hook(self, module, args, kwargs) -> None:
        t = args[1] if len(args) > 1 else kwargs["timestep"]
        timesteps = adapter_for(module).model_timestep(self.pipe.scheduler.timesteps)  # as the denoiser sees them
        match = (timesteps.to(torch.as_tensor(t).device) == torch.as_tensor(t).reshape(-1)[0]).nonzero()
        if len(match) == 0:
            raise RuntimeError(f"timestep {t} is not in the scheduler's schedule; cannot tell the sampling step")
        self.step = int(match[0, 0])
        self.grid = adapter_for(module).token_grid(module, args, kwargs)

    def __enter__(self) -> "StepTracker":
        self._handle = denoiser(self.pipe).register_forward_pre_hook(self._pre_hook, with_kwargs=True)
        return self

    def __exit__(self, *exc) -> None:
        self._handle.remove()


class ActivationCapture:
    """Record activations of `hookpoints` at the sampling steps `at_steps` (indices) while the pipeline samples;
    `take()` returns and clears them."""

    def __init__(self, pipe, hookpoints: Sequence[str], at_steps: Sequence[int], readout: str = "update",
                 branches: Sequence[str] = ("cond", "uncond"), dtype: torch.dtype = torch.float32):
        if readout not in READOUTS:
            raise BadInput(f"unknown readout '{readout}'; use 'update' (output - input) or 'output'")
        if not branches or not set(branches) <= {"cond", "uncond"}:
            raise BadInput(f"unknown branches {list(branches)}; use 'cond' and/or 'uncond'")
        self.pipe, self.steps, self.readout, self.branches, self.dtype = pipe, list(at_steps), readout, branches, dtype
        self.modules = {name: resolve_hookpoint(pipe, name) for name in hookpoints}
        self.adapter = adapter_for(denoiser(pipe))
        self.tracker = StepTracker(pipe)
        self._records: dict[tuple[str, str], dict[int, list[torch.Tensor]]] = defaultdict(lambda: defaultdict(list))
        self._handles: list = []
        self.grids: dict[str, tuple[int, int]] = {}  # hookpoint -> (H, W) of its feature map

    def _hook(self, name: str):
        def hook(module, args, kwargs, output):
            step = self.tracker.step
            if step not in self.steps:
                return None
            inp, out, self.grids[name] = self.adapter.block_tokens(args, kwargs, output, self.tracker.grid)
            act = ((out - inp) if self.readout == "update" else out).detach()
            for branch, part in split_branches(self.pipe, act).items():
                if branch in self.branches:
                    self._records[(name, branch)][step].append(part.to("cpu", self.dtype, copy=True))
            return None

        return hook

    def __enter__(self) -> "ActivationCapture":
        self.tracker.__enter__()
        self._handles = [m.register_forward_hook(self._hook(n), with_kwargs=True) for n, m in self.modules.items()]
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self.tracker.__exit__(*exc)

    def take(self) -> dict[tuple[str, str], torch.Tensor]:
        """{(hookpoint, branch): (images, steps, positions, channels)} recorded since the last call; then cleared."""
        out = {}
        for key, per_step in self._records.items():
            missing = [s for s in self.steps if s not in per_step]
            if missing:
                raise RuntimeError(f"{key[0]} ({key[1]}): no activations for steps {missing}; did the pipeline run "
                                   "with the same number of inference steps as the capture?")
            out[key] = torch.stack([torch.cat(per_step[s]) for s in self.steps], 1)
        self._records.clear()
        return out
