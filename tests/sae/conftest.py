"""Fixtures for the SAE tests: tiny random pipelines and activation stores written from known tensors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cadiff.io.files import write_json
from cadiff.sae.store import FORMAT, META, act_key, shard_name, write_shard


def make_store(path: Path, acts: torch.Tensor, hookpoint: str = "mid_block.attentions.0", shard_size: int = 8,
               grid: tuple[int, int] | None = None, extra: dict[str, torch.Tensor] | None = None) -> Path:
    """A store folder holding `acts` (images, steps, positions, channels) as the 'cond' branch at steps 0..S-1."""
    n, s, p, c = acts.shape
    grid = grid or (1, p)
    path.mkdir(parents=True)
    write_json(path / META, {"format": FORMAT, "hookpoints": {hookpoint: {"grid": list(grid), "channels": c}},
                             "steps": list(range(s)), "times": [1 - i / max(s - 1, 1) for i in range(s)],
                             "branches": ["cond"], "readout": "update", "num_inference_steps": s,
                             "guidance_scale": 4.0, "model": {"source": "synthetic", "fingerprint": "0"},
                             "world": "shapes"})
    for i, start in enumerate(range(0, n, shard_size)):
        chunk = acts[start:start + shard_size]
        tensors = {act_key(hookpoint, "cond"): chunk, "seed": torch.arange(len(chunk)),
                   "index": torch.arange(start, start + len(chunk))}
        tensors.update({k: v[start:start + shard_size] for k, v in (extra or {}).items()})
        write_shard(path / shard_name(i), tensors, ["x"] * len(chunk))
    return path


@pytest.fixture(scope="module")
def sd1():
    from tiny_pipelines import tiny_sd

    return tiny_sd("sd1")


@pytest.fixture
def store_from():
    """make_store as a fixture: store_from(path, acts, ...) -> folder."""
    return make_store
