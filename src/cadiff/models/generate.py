"""Generation through the stock pipeline call, one seed per image, so an image depends only on its prompt and seed.

Example:
    >>> import cadiff
    >>> pipe = cadiff.load_pipeline()
    >>> images = cadiff.generate(pipe, ["a red circle"] * 4, seeds=[0, 1, 2, 3])   # (4, 32, 32, 3) uint8
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch

from cadiff.distributed import gather_rows, rank_and_world, shard, together
from cadiff.errors import BadInput
from cadiff.models.loading import check_weights, nonfinite_count, resolve_sampling
from cadiff.models.trace import generators, sample
from cadiff.models.vocabulary import check_known_words


def generate(
    pipe,
    prompts: Sequence[str],
    seeds: Sequence[int],
    steps: int | None = None,
    guidance: float | None = None,
    batch_size: int = 64,
    progress: Callable[[int], None] | None = None,
    **pipe_kwargs,
) -> np.ndarray:
    """Images (N, H, W, 3) uint8 for each (prompt, seed); unset settings are the model's (`resolve_sampling`).
    ValueError before any generation for a word the model's (closed) vocabulary lacks or a denoiser with NaN or
    infinite weights, and for an image with NaN or infinite pixel values (which would turn black)."""
    if len(prompts) != len(seeds):
        raise BadInput(f"got {len(prompts)} prompts but {len(seeds)} seeds; give one seed per prompt")
    check_known_words(pipe, list(dict.fromkeys(prompts)))
    check_weights(pipe)
    return render(pipe, prompts, seeds, steps, guidance, batch_size, progress, **pipe_kwargs)


def render(pipe, prompts: Sequence[str], seeds: Sequence[int], steps: int | None = None,
           guidance: float | None = None, batch_size: int = 64, progress: Callable[[int], None] | None = None,
           **pipe_kwargs) -> np.ndarray:
    """`generate` for prompts checked already (a Concepts object's, a world's own, a checked prompt set's) on a
    model whose weights were checked: the layers below an edge call this, so nothing is checked twice. An image
    with NaN or infinite pixels is still refused."""
    steps, guidance = resolve_sampling(pipe, steps, guidance)
    world = rank_and_world()[1]
    if world > 1 and len(prompts) >= world:  # several processes: each renders every world-th image
        mine = together(lambda: _render(pipe, shard(list(prompts)), shard(list(seeds)), steps, guidance, batch_size,
                                        progress, **pipe_kwargs))
        return gather_rows(torch.from_numpy(mine), len(prompts)).numpy()
    return _render(pipe, prompts, seeds, steps, guidance, batch_size, progress, **pipe_kwargs)


def _render(pipe, prompts: Sequence[str], seeds: Sequence[int], steps: int, guidance: float, batch_size: int,
            progress: Callable[[int], None] | None, **pipe_kwargs) -> np.ndarray:
    out = []
    for i in range(0, len(prompts), batch_size):
        chunk_p, chunk_s = list(prompts[i : i + batch_size]), seeds[i : i + batch_size]
        result = sample(pipe, chunk_p, generators(chunk_s), steps, guidance, output_type="np", **pipe_kwargs)
        _check_pixels(pipe, np.asarray(result.images), chunk_p, chunk_s)
        out.append((np.clip(result.images, 0, 1) * 255).round().astype(np.uint8))
        if progress is not None:
            progress(len(chunk_p))
    return np.concatenate(out) if out else np.zeros((0, 0, 0, 3), np.uint8)


def _check_pixels(pipe, images: np.ndarray, prompts: Sequence[str], seeds: Sequence[int]) -> None:
    """ValueError naming the first (prompt, seed) whose image has NaN or infinite pixel values, or the pipeline
    component whose weights caused them."""
    if np.isfinite(images).all():
        return
    check_weights(pipe, whole_pipeline=True)
    i = next(i for i, image in enumerate(images) if not np.isfinite(image).all())
    count = nonfinite_count(torch.from_numpy(images[i]))
    raise BadInput(f"the image of '{prompts[i]}' (seed {seeds[i]}) has {count} among its pixels (which would turn "
                   "black): the model overflowed; load it in fp32 (--dtype fp32) or lower the guidance")
