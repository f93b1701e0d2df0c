"""Activation shards on disk: safetensors files of (images, steps, positions, channels) plus per-image metadata,
read back shard by shard so training data can be larger than memory.

Folder layout: `meta.json` (hookpoints with their grids, steps, branches, readout, model, prompts, seeds) and
`shard_00000.safetensors`, ... Each shard holds `act/<hookpoint>/<branch>`, `seed`, `index`, `image` (the final
generated image) and, for the shapes world, `mask` (foreground of the final image) and `shape`/`colour`/`texture`
(indices named by the prompt, -1 where the prompt leaves the attribute open) and `seen_shape`/... (what the
shapes evaluator reads off the final image, where the evaluator is shipped).

Example:
    >>> from cadiff.sae import ActivationStore
    >>> store = ActivationStore("runs/acts")                                          # doctest: +SKIP
    >>> for x in store.batches("mid_block.attentions.0", "cond", steps=[0], batch_size=4096):   # doctest: +SKIP
    ...     x.shape                                                                   # (<=4096, channels)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from cadiff.errors import BadInput, MissingFile
from cadiff.io.files import atomic_file

FORMAT = "cadiff-activations/1"
META = "meta.json"
ShardPart = int | tuple[int, int, int]  # a shard's index, or (index, start, stop): a range of its images


def shard_name(i: int) -> str:
    return f"shard_{i:05d}.safetensors"


def act_key(hookpoint: str, branch: str) -> str:
    return f"act/{hookpoint}/{branch}"


def write_shard(path: Path, tensors: dict[str, torch.Tensor], prompts: Sequence[str]) -> None:
    """Write one shard atomically: it exists whole or not at all."""
    with atomic_file(path) as tmp:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata={"prompts": json.dumps(list(prompts))})


def open_shard(shard: Path):
    """A safetensors handle on one shard; ValueError saying what to do if it is truncated, corrupt or empty."""
    try:
        f = safe_open(str(shard), framework="pt")
        keys = list(f.keys())
    except Exception as exc:
        raise BadInput(f"activation shard {shard} is truncated or corrupt ({exc}); delete it and rerun "
                       "`cadiff sae collect` with the same settings to capture it again") from exc
    if "seed" not in keys or f.get_slice("seed").get_shape()[0] == 0:
        raise BadInput(f"activation shard {shard} is empty; delete it and rerun `cadiff sae collect`")
    return f


class ActivationStore:
    """A folder of activation shards written by `collect_activations`; read lazily, one shard at a time."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not (self.path / META).is_file():
            raise MissingFile(f"{self.path} is not an activation folder (no {META}); "
                              "create one with `cadiff sae collect` / cadiff.sae.collect_activations")
        self.meta = json.loads((self.path / META).read_text())
        if self.meta.get("format") != FORMAT:
            raise BadInput(f"{self.path}/{META} has format {self.meta.get('format')!r}, expected {FORMAT!r}")
        self.shards = sorted(self.path.glob("shard_*.safetensors"))
        if not self.shards:
            raise BadInput(f"{self.path} holds no activation shards; the capture wrote nothing yet - rerun "
                           "`cadiff sae collect` with the same settings to resume it")

    # what is stored
    @property
    def hookpoints(self) -> list[str]:
        return list(self.meta["hookpoints"])

    @property
    def steps(self) -> list[int]:
        return list(self.meta["steps"])

    @property
    def branches(self) -> list[str]:
        return list(self.meta["branches"])

    def grid(self, hookpoint: str) -> tuple[int, int]:
        """(H, W) of the hookpoint's feature map."""
        self.check(hookpoint)
        return tuple(self.meta["hookpoints"][hookpoint]["grid"])

    def channels(self, hookpoint: str) -> int:
        self.check(hookpoint)
        return int(self.meta["hookpoints"][hookpoint]["channels"])

    def check(self, hookpoint: str, branch: str | None = None, steps: Sequence[int] | None = None) -> None:
        """ValueError naming what is stored when `hookpoint`, `branch` or `steps` were not captured."""
        if hookpoint not in self.meta["hookpoints"]:
            raise BadInput(f"hookpoint '{hookpoint}' was not captured in {self.path}; "
                           f"it holds: {', '.join(self.hookpoints)}")
        if branch is not None and branch not in self.branches:
            raise BadInput(f"branch '{branch}' was not captured in {self.path}; it holds: {', '.join(self.branches)}")
        missing = [s for s in (steps or []) if s not in self.steps]
        if missing:
            raise BadInput(f"steps {missing} were not captured in {self.path}; it holds steps {self.steps}")

    # reading
    def read(self, shard: Path, keys: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
        """Tensors of one shard (all, or only `keys`)."""
        f = open_shard(shard)
        return {k: f.get_tensor(k) for k in (keys if keys is not None else f.keys())}

    def prompts(self, shard: Path) -> list[str]:
        return json.loads(open_shard(shard).metadata()["prompts"])

    def activations(self, hookpoint: str, branch: str, steps: Sequence[int] | None = None) -> Iterator[torch.Tensor]:
        """Per shard: (images, len(steps), positions, channels) float32."""
        steps = list(steps) if steps is not None else self.steps
        self.check(hookpoint, branch, steps)
        idx = [self.steps.index(s) for s in steps]
        for shard in self.shards:
            yield self.read(shard, [act_key(hookpoint, branch)])[act_key(hookpoint, branch)][:, idx].float()

    def tokens(self, hookpoint: str, branch: str, steps: Sequence[int] | None = None,
               shards: Sequence[ShardPart] | None = None) -> int:
        """How many activation vectors (images x steps x positions) the selection holds (of `shards` only)."""
        steps = list(steps) if steps is not None else self.steps
        self.check(hookpoint, branch, steps)
        h, w = self.grid(hookpoint)
        return self.num_images(shards) * len(steps) * h * w

    def shard_images(self, i: int) -> int:
        """How many images shard i holds."""
        return open_shard(self.shards[i]).get_slice("seed").get_shape()[0]

    def num_images(self, shards: Sequence[ShardPart] | None = None) -> int:
        """Images in the store, or in `shards` (shard indices or (index, start, stop) image ranges)."""
        parts = range(len(self.shards)) if shards is None else shards
        return sum(p[2] - p[1] if isinstance(p, tuple) else self.shard_images(p) for p in parts)

    def batches(self, hookpoint: str, branch: str, steps: Sequence[int] | None = None, batch_size: int = 4096,
                seed: int = 0, shuffle: bool = True, buffer_shards: int = 4,
                shards: Sequence[ShardPart] | None = None) -> Iterator[torch.Tensor]:
        """Token batches (batch, channels), streamed: a shuffle buffer of a few shards, never the whole store.
        `shards`: which to read, as shard indices or (index, start, stop) ranges of a shard's images."""
        gen = torch.Generator().manual_seed(seed)
        chosen = list(range(len(self.shards))) if shards is None else list(shards)
        order = [chosen[i] for i in torch.randperm(len(chosen), generator=gen)] if shuffle else chosen
        channels = self.channels(hookpoint)
        steps = list(steps) if steps is not None else self.steps
        self.check(hookpoint, branch, steps)
        idx = [self.steps.index(s) for s in steps]
        key = act_key(hookpoint, branch)
        carry = torch.zeros(0, channels)
        for start in range(0, len(order), buffer_shards):
            group = [self._part(part, key)[:, idx].reshape(-1, channels).float()
                     for part in order[start:start + buffer_shards]]
            pool = torch.cat([carry, *group])
            if shuffle:
                pool = pool[torch.randperm(len(pool), generator=gen)]
            full = len(pool) // batch_size * batch_size
            for i in range(0, full, batch_size):
                yield pool[i:i + batch_size]
            carry = pool[full:]
        if len(carry):
            yield carry

    def _part(self, part: ShardPart, key: str) -> torch.Tensor:
        """Tensor `key` of a shard, or of a range of its images."""
        if isinstance(part, tuple):
            i, begin, end = part
            return self.read(self.shards[i], [key])[key][begin:end]
        return self.read(self.shards[part], [key])[key]

    def metadata(self) -> dict[str, np.ndarray | list]:
        """Per-image metadata of the whole store: prompts, seed, index, image, and mask/labels where present."""
        out: dict[str, list] = {"prompts": []}
        for shard in self.shards:
            f = open_shard(shard)
            out["prompts"] += json.loads(f.metadata()["prompts"])
            for k in f.keys():
                if not k.startswith("act/"):
                    out.setdefault(k, []).append(f.get_tensor(k).numpy())
        return {k: (v if k == "prompts" else np.concatenate(v)) for k, v in out.items()}
