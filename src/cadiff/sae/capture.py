"""Reading hookpoint activations during sampling: per step, conditional and unconditional branch apart.

Forward hooks on the hookpoint modules record the residual update (output - input, the default) or the output,
as (images, positions, channels). The step and the branch of each row come from the denoiser trace
(`cadiff.models.trace`): the step from the scheduler's schedule, so extra denoiser calls or skipped steps cannot
shift it; the branches ('cond', and 'uncond' under guidance) as the family lays them out, halves of one doubled
batch or calls of their own.

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
from cadiff.models.loading import denoiser
from cadiff.models.trace import DenoiserTrace
from cadiff.sae.hookpoints import resolve_hookpoint

READOUTS = ("update", "output")


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
        self.trace = DenoiserTrace(pipe)
        self._records: dict[tuple[str, str], dict[int, list[torch.Tensor]]] = defaultdict(lambda: defaultdict(list))
        self._handles: list = []
        self.grids: dict[str, tuple[int, int]] = {}  # hookpoint -> (H, W) of its feature map

    def _hook(self, name: str):
        def hook(module, args, kwargs, output):
            call = self.trace.current
            if call.step not in self.steps:
                return None
            inp, out, self.grids[name] = self.adapter.block_tokens(args, kwargs, output, call.grid)
            act = ((out - inp) if self.readout == "update" else out).detach()
            for branch, rows in call.parts.items():
                if branch in self.branches:
                    self._records[(name, branch)][call.step].append(act[rows].to("cpu", self.dtype, copy=True))
            return None

        return hook

    def __enter__(self) -> "ActivationCapture":
        self.trace.__enter__()
        self._handles = [m.register_forward_hook(self._hook(n), with_kwargs=True) for n, m in self.modules.items()]
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self.trace.__exit__(*exc)

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
