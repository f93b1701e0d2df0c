"""`collect_activations`: sample images through `cadiff.generate` with an `ActivationCapture` attached and write the
activations into shards; an interrupted capture resumes from its last complete shard.

Example:
    >>> import cadiff
    >>> pipe = cadiff.load_pipeline()
    >>> config = CaptureConfig(hookpoints=("mid_block.attentions.0",), at_steps="first,mid,last")
    >>> store = cadiff.collect_activations(pipe, ["a red circle"] * 64, range(64), "runs/acts", config)  # doctest: +SKIP
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from cadiff.adapters import adapter_for
from cadiff.distributed import from_rank0, gather_rows, is_main, leading, rank_and_world, stop_together, together
from cadiff.errors import BadInput
from cadiff.config import Config, option
from cadiff.io.files import OutputExistsError, check_new, check_target, resumable_dir, write_json
from cadiff.models.generate import generate
from cadiff.models.loading import denoiser, describe_model, resolve_sampling
from cadiff.sae.capture import ActivationCapture
from cadiff.sae.hookpoints import resolve_hookpoint, resolve_steps, step_time
from cadiff.sae.store import FORMAT, META, ActivationStore, act_key, open_shard, shard_name, write_shard
from cadiff.worlds import World, get_world, world_of

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
READOUTS = ("update", "output")
BRANCHES = ("cond", "uncond")


@dataclass(frozen=True)
class CaptureConfig(Config):
    """What a capture stores: the hookpoints, the sampling steps, the readout, the guidance branches, and how."""

    hookpoints: tuple[str, ...] = option(("mid_block.attentions.0",), "comma-separated module paths (default "
                                                                       "mid_block.attentions.0; cadiff sae hookpoints "
                                                                       "lists them)")
    at_steps: str | Sequence[int] = option("first,mid,last", "sampling steps to capture: all | early | middle | final | "
                                             "first,mid,last (default) | indices 0,12,24")
    readout: str = option("update", "residual update (output - input, default) or the module output",
                          choices=READOUTS)
    branches: tuple[str, ...] = option(BRANCHES, "guidance branches, comma-separated (default cond,uncond)")
    steps: int | None = option(None, "sampling steps (default: the model's)", low=1)
    guidance: float | None = option(None, "guidance scale (default: the model's)", low=0)
    shard_size: int = option(64, "images per shard (default 64)", low=1)
    store_dtype: str = option("float32", "dtype of the stored activations (default float32)", choices=tuple(DTYPES))

    def __post_init__(self):
        self.check_bounds()
        for name in ("hookpoints", "branches"):
            if isinstance(getattr(self, name), (str, list)):
                value = getattr(self, name)
                object.__setattr__(self, name, tuple(value.split(",") if isinstance(value, str) else value))
        if not self.hookpoints:
            raise BadInput("no hookpoint given; name one (cadiff sae hookpoints lists them)")
        unknown = [b for b in self.branches if b not in BRANCHES]
        if unknown or not self.branches:
            raise BadInput(f"branches must be some of {', '.join(BRANCHES)}, got {', '.join(self.branches)}")
        if self.readout not in READOUTS:
            raise BadInput(f"readout must be one of {', '.join(READOUTS)}, got '{self.readout}'")
        if self.store_dtype not in DTYPES:
            raise BadInput(f"unknown store_dtype '{self.store_dtype}'; use one of {', '.join(DTYPES)}")


def _world(pipe, shapes_world: bool | None) -> World | None:
    """The world whose labels and masks go into the shards: the pipeline's, or as `shapes_world` forces it."""
    if shapes_world is None:
        return world_of(pipe)
    return get_world("shapes") if shapes_world else None


def _judge(world):
    """The world's judge, or None where it is not shipped (then labels come from the prompts only)."""
    try:
        return world.judge()
    except FileNotFoundError:
        return None


def _plan_matches(old: dict, new: dict) -> bool:
    keys = ("hookpoints_requested", "steps", "branches", "readout", "dtype", "num_inference_steps", "guidance_scale",
            "prompts", "seeds", "shard_size")
    return all(old.get(k) == new.get(k) for k in keys) and old["model"]["fingerprint"] == new["model"]["fingerprint"]


def collect_activations(pipe, prompts: Sequence[str], seeds: Sequence[int], out: str | Path,
                        config: CaptureConfig | None = None, *, shapes_world: bool | None = None,
                        overwrite: bool = False, model_source: str | None = None,
                        progress: Callable[[int], None] | None = None, **options) -> ActivationStore:
    """Generate one image per (prompt, seed) and store the activations `config` names (default CaptureConfig();
    `options` set its fields) into `out`.

    If `out` holds an interrupted capture with the same settings, only its missing shards are made; `overwrite`
    captures afresh beside an existing `out` and replaces it only once the capture is complete."""
    config = (config or CaptureConfig()).with_options("collect_activations()", **options)
    prompts, seeds = list(prompts), [int(s) for s in seeds]
    if len(prompts) != len(seeds):
        raise BadInput(f"got {len(prompts)} prompts but {len(seeds)} seeds; give one seed per prompt")
    if not prompts:
        raise BadInput("no prompts given; nothing to capture")
    hookpoints, readout, branches = list(config.hookpoints), config.readout, list(config.branches)
    shard_size, dtype = config.shard_size, config.store_dtype
    for name in hookpoints:
        resolve_hookpoint(pipe, name)
    n_steps, guidance = resolve_sampling(pipe, config.steps, config.guidance)
    captured = resolve_steps(config.at_steps, n_steps)
    if "uncond" in branches and not adapter_for(denoiser(pipe)).layout(pipe, guidance).guided:
        branches = [b for b in branches if b != "uncond"]  # unguided: the pipeline runs the conditional branch only
    world = _world(pipe, shapes_world)
    plan = {"format": FORMAT, "hookpoints_requested": list(hookpoints), "steps": captured,
            "times": [round(step_time(s, n_steps), 4) for s in captured], "branches": list(branches),
            "readout": readout, "dtype": dtype, "num_inference_steps": n_steps, "guidance_scale": guidance,
            "shard_size": shard_size, "shapes_world": world is not None,
            "world": None if world is None else world.name, "model": describe_model(pipe, model_source),
            "prompts": prompts, "seeds": seeds}
    out = Path(out)
    if is_main():  # (several processes: rank 0's folder, which it locks, and no other rank touches)
        if out.exists():
            check_target(out)  # not the current folder, not being written by another process
        else:
            check_new(out)  # and a place that can be written
    capture = ActivationCapture(pipe, hookpoints, captured, readout, branches, DTYPES[dtype])
    if not is_main():  # several processes: rank 0 keeps the store; this rank renders and reads its share
        with capture:
            for i in from_rank0(None):  # the shards rank 0 has left to make
                _capture_shard(pipe, capture, prompts, seeds, i, shard_size, n_steps, guidance)
                stop_together(None)  # rank 0 has written the shard (or failed: then this rank stops too)
        return None
    with leading() as tell, resumable_dir(out, overwrite) as (folder, fresh):
        _collect(pipe, prompts, seeds, folder, fresh, plan, capture, hookpoints, branches, shard_size, world,
                 progress, tell)
    return ActivationStore(out)


def _capture_shard(pipe, capture: ActivationCapture, prompts, seeds, i: int, shard_size: int, n_steps: int,
                   guidance: float) -> tuple[np.ndarray, dict[str, torch.Tensor]]:
    """Shard i's images and activations {key: (images, steps, positions, channels)}. With several processes each
    rank renders and reads every N-th image, and both are gathered in order."""
    chunk_p, chunk_s = prompts[i * shard_size:(i + 1) * shard_size], seeds[i * shard_size:(i + 1) * shard_size]
    images = generate(pipe, chunk_p, chunk_s, steps=n_steps, guidance=guidance, batch_size=shard_size)
    taken = {act_key(h, b): t for (h, b), t in sorted(capture.take().items())}
    if rank_and_world()[1] > 1 and len(chunk_p) >= rank_and_world()[1]:  # as render shards its images
        taken = {key: gather_rows(t, len(chunk_p)) for key, t in taken.items()}
    return images, taken


def _collect(pipe, prompts, seeds, out: Path, fresh: bool, plan: dict, capture: ActivationCapture, hookpoints,
             branches, shard_size, world, progress, tell) -> None:
    """Capture the shards of `out` not yet written (locked, or a fresh temporary folder), as `plan` says."""
    n_steps, guidance = plan["num_inference_steps"], plan["guidance_scale"]
    if not fresh and (out / META).is_file():
        old = json.loads((out / META).read_text())
        if not _plan_matches(old, plan):
            raise OutputExistsError(f"{out} holds a capture with other settings or another model; "
                                    "choose another --out or pass --overwrite")
        plan["hookpoints"] = old.get("hookpoints", {})
    else:
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise OutputExistsError(f"{out} already exists and holds no capture; choose another --out")
        out.mkdir(parents=True, exist_ok=True)
        plan["hookpoints"] = {}
        write_json(out / META, plan)

    judge = _judge(world) if world is not None else None
    todo = []
    for i, start in enumerate(range(0, len(prompts), shard_size)):
        path = out / shard_name(i)
        if path.is_file():
            try:
                open_shard(path)
                if progress:
                    progress(len(prompts[start:start + shard_size]))
                continue
            except ValueError:
                path.unlink()  # a damaged shard: capture it again
        todo.append(i)
    tell(todo)  # several processes: the other ranks render and read the same shards
    with capture:
        for i in todo:
            start = i * shard_size
            chunk_p, chunk_s = prompts[start:start + shard_size], seeds[start:start + shard_size]
            images, tensors = _capture_shard(pipe, capture, prompts, seeds, i, shard_size, n_steps, guidance)
            together(lambda: _write(out, plan, capture, hookpoints, branches, world, judge, i, start, chunk_p, chunk_s,
                                    images, tensors))
            if progress:
                progress(len(chunk_p))


def _write(out: Path, plan: dict, capture: ActivationCapture, hookpoints, branches, world, judge, i: int, start: int,
           chunk_p, chunk_s, images: np.ndarray, tensors: dict[str, torch.Tensor]) -> None:
    """Shard i with its seeds, indices, images and (on a world's model) labels; the plan's hookpoint grids once."""
    tensors = {**tensors, "seed": torch.tensor(chunk_s), "index": torch.arange(start, start + len(chunk_p)),
               "image": torch.from_numpy(images)}
    if world is not None:
        tensors.update(world.image_metadata(images, chunk_p, judge))
    if not plan["hookpoints"]:
        plan["hookpoints"] = {h: {"grid": list(capture.grids[h]),
                                  "channels": int(tensors[act_key(h, branches[0])].shape[-1])} for h in hookpoints}
        write_json(out / META, plan)
    write_shard(out / shard_name(i), tensors, chunk_p)

