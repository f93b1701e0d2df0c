"""Training a TopK SAE on stored activations, streamed shard by shard: Adam, geometric-median pre-bias, unit-norm
decoder rows, AuxK loss on dead latents; checkpoints so an interrupted run resumes where it stopped.

Example:
    >>> from cadiff.sae import ActivationStore, SAETrainConfig, train_sae
    >>> store = ActivationStore("runs/acts")                                                    # doctest: +SKIP
    >>> sae, metrics = train_sae(store, "mid_block.attentions.0", "cond", at_steps=[0], k=10)  # doctest: +SKIP
    >>> metrics["explained_variance"], metrics["l0"], metrics["dead_fraction"]                  # doctest: +SKIP
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import torch
from safetensors.torch import load_file, save_file

from cadiff.errors import BadInput
from cadiff.config import Config, option
from cadiff.io.files import write_json
from cadiff.sae.model import TopKSAE
from cadiff.sae.store import ActivationStore, ShardPart


@dataclass(frozen=True)
class SAETrainConfig(Config):
    """Settings of one SAE training run (defaults: the paper's, with lr for small data sets)."""

    expansion: int = option(4, "dictionary size / activation width (default 4)", low=1)
    d_sae: int | None = option(None, "dictionary size (overrides --expansion)", low=1)
    k: int = option(10, "latents active per token (default 10)", low=1)
    lr: float = option(4e-4, "Adam learning rate (default 4e-4)", low=0, low_open=True)
    batch_size: int = option(4096, "tokens per optimizer step (default 4096)", low=1)
    epochs: int = option(1, "passes over the training shards (default 1)", low=1)
    max_tokens: int | None = option(None, "stop after this many training tokens (default: all epochs)", low=1)
    aux_k: int = option(256, "dead latents that reconstruct the residual (default 256)", low=0)
    aux_coef: float = option(1 / 32, "weight of the auxiliary loss (default 1/32)", low=0)
    dead_tokens: int = option(1_000_000, "tokens without firing after which a latent is dead (default 1000000)",
                              low=1)
    median_samples: int = option(16384, "tokens for the geometric-median initialisation of b_dec (default 16384)",
                                 low=1)
    holdout_shards: int = option(1, "last shards kept out of training, for the evaluation (one shard: its last 1/8 "
                                    "of images, at least one) (default 1)", low=0)
    checkpoint_every: int = option(200, "optimizer steps between checkpoints (default 200)", low=1)
    seed: int = option(0, "seed of the initialisation and the batch order (default 0)")

    def __post_init__(self):
        self.check_bounds()


def geometric_median(x: torch.Tensor, iters: int = 100, eps: float = 1e-6) -> torch.Tensor:
    """The point minimising the summed Euclidean distance to the rows of x (Weiszfeld's algorithm)."""
    median = x.mean(0)
    for _ in range(iters):
        weights = 1 / (x - median).norm(dim=1).clamp_min(eps)
        new = (weights[:, None] * x).sum(0) / weights.sum()
        if (new - median).norm() < eps * (1 + median.norm()):
            return new
        median = new
    return median


def auxk_loss(sae: TopKSAE, pre: torch.Tensor, x: torch.Tensor, x_hat: torch.Tensor, dead: torch.Tensor,
              aux_k: int) -> torch.Tensor:
    """How well the top `aux_k` dead latents (pre-activations `pre`) reconstruct the residual x - x_hat
    (0 when no latent is dead)."""
    n_dead = int(dead.sum())
    if n_dead == 0:
        return x.new_zeros(())
    pre = pre.masked_fill(~dead, 0.0)
    values, indices = pre.topk(min(aux_k, n_dead), dim=-1)
    residual = (x - x_hat).detach()
    residual_hat = torch.zeros_like(pre).scatter(-1, indices, values) @ sae.W_dec
    return (residual_hat - residual).pow(2).sum(-1).mean()


@torch.no_grad()
def evaluate_sae(sae: TopKSAE, batches: Iterator[torch.Tensor]) -> dict[str, float]:
    """Explained variance, mean L0, fraction of latents that never fired, and tokens seen, over `batches`."""
    sq_err, n, total, total_sq, l0 = 0.0, 0, 0.0, 0.0, 0.0
    fired = torch.zeros(sae.d_sae, dtype=torch.bool)
    for x in batches:
        z = sae.encode(x)
        sq_err += (sae.decode(z) - x).pow(2).sum().item()
        total = total + x.sum(0)
        total_sq += x.pow(2).sum().item()
        l0 += (z > 0).sum().item()
        fired |= (z > 0).any(0)
        n += len(x)
    if n == 0:
        raise BadInput("no activations to evaluate on")
    variance = total_sq - (total.pow(2).sum() / n).item()
    return {"explained_variance": 1 - sq_err / max(variance, 1e-12), "l0": l0 / n,
            "dead_fraction": 1 - fired.float().mean().item(), "eval_tokens": n}


def train_step(sae: TopKSAE, opt: torch.optim.Optimizer, x: torch.Tensor, since_fired: torch.Tensor,
               cfg: SAETrainConfig) -> tuple[float, float, int]:
    """One Adam step on a batch x (B, d_in); updates `since_fired` (tokens since each latent last fired) in place.
    Returns (reconstruction loss, AuxK loss, number of dead latents)."""
    pre = sae.pre_acts(x)
    z = sae.topk(pre)
    x_hat = sae.decode(z)
    mse = (x_hat - x).pow(2).sum(-1).mean()
    dead = since_fired >= cfg.dead_tokens
    aux = auxk_loss(sae, pre, x, x_hat, dead, cfg.aux_k)
    opt.zero_grad(set_to_none=True)
    (mse + cfg.aux_coef * aux).backward()
    sae.project_decoder_grad()
    opt.step()
    sae.normalize_decoder()
    with torch.no_grad():
        since_fired += len(x)
        since_fired[(z > 0).any(0)] = 0
    return mse.item(), aux.item(), int(dead.sum())


def split_shards(store: ActivationStore, cfg: SAETrainConfig) -> tuple[list[ShardPart], list[ShardPart]]:
    """(training parts, held-out parts): the last `holdout_shards` shards are held out; a store of one shard holds
    out its last eighth of images (at least one). ValueError, before any training, when nothing can be held out."""
    n = len(store.shards)
    if n > 1:
        hold = min(cfg.holdout_shards, n - 1)
        return list(range(n - hold)), list(range(n - hold, n))
    images = store.shard_images(0)
    if images < 2:
        raise BadInput(f"{store.path} holds {images} image; training needs at least 2 (the last ones are held out "
                       "to measure the SAE): collect more with `cadiff sae collect`")
    hold = max(1, images // 8)
    return [(0, 0, images - hold)], [(0, images - hold, images)]


def training_tokens(store: ActivationStore, hookpoint: str, branch: str, steps: Sequence[int],
                    cfg: SAETrainConfig) -> int:
    """How many tokens `train_sae` will train on (the held-out part excluded; at most about `cfg.max_tokens`)."""
    train_parts, _ = split_shards(store, cfg)
    total = store.tokens(hookpoint, branch, steps, shards=train_parts) * cfg.epochs
    return total if cfg.max_tokens is None else min(total, cfg.max_tokens)


def _save_checkpoint(path: Path, sae: TopKSAE, opt: torch.optim.Optimizer, state: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    sae.save(tmp / "sae")
    tensors = {}
    for i, p in enumerate(sae.parameters()):
        for name, value in opt.state[p].items():
            tensors[f"{i}.{name}"] = torch.as_tensor(value).contiguous()
    tensors["since_fired"] = state.pop("since_fired")
    save_file(tensors, str(tmp / "optimizer.safetensors"))
    write_json(tmp / "state.json", state)
    shutil.rmtree(path, ignore_errors=True)
    tmp.rename(path)


def _load_checkpoint(path: Path, sae: TopKSAE, opt: torch.optim.Optimizer) -> dict:
    loaded = TopKSAE.load(path / "sae")
    sae.load_state_dict(loaded.state_dict())
    tensors = load_file(str(path / "optimizer.safetensors"))
    for i, p in enumerate(sae.parameters()):
        opt.state[p] = {name: tensors[f"{i}.{name}"] for name in ("step", "exp_avg", "exp_avg_sq")}
    state = json.loads((path / "state.json").read_text())
    state["since_fired"] = tensors["since_fired"]
    return state


def train_sae(
    store: ActivationStore,
    hookpoint: str,
    branch: str = "cond",
    at_steps: Sequence[int] | None = None,
    config: SAETrainConfig | None = None,
    *,
    checkpoint: str | Path | None = None,
    progress: Callable[[dict], None] | None = None,
    **options,
) -> tuple[TopKSAE, dict]:
    """Train one SAE on (hookpoint, branch, the stored sampling steps `at_steps`: default all) of `store` with
    `config` (default SAETrainConfig(); `options` set its fields); returns it with its metrics.

    With `checkpoint`, progress is saved there every `config.checkpoint_every` steps and a run with the same
    settings resumes from it; the folder is removed when training ends."""
    cfg = (config or SAETrainConfig()).with_options("train_sae()", **options)
    steps = list(at_steps) if at_steps is not None else store.steps
    store.check(hookpoint, branch, steps)
    train_shards, eval_shards = split_shards(store, cfg)
    d_in = store.channels(hookpoint)
    d_sae = cfg.d_sae or cfg.expansion * d_in
    meta = {"hook_name": hookpoint, "model_name": store.meta["model"].get("source"),
            "reads_residual_update": store.meta["readout"] == "update", "branch": branch, "steps": steps,
            "times": [store.meta["times"][store.steps.index(s)] for s in steps],
            "num_inference_steps": store.meta["num_inference_steps"],
            "guidance_scale": store.meta["guidance_scale"], "grid": list(store.grid(hookpoint)),
            "model_fingerprint": store.meta["model"]["fingerprint"], "train": asdict(cfg)}
    torch.manual_seed(cfg.seed)
    sae = TopKSAE(d_in, d_sae, cfg.k, meta)
    opt = torch.optim.Adam(sae.parameters(), lr=cfg.lr)
    checkpoint = Path(checkpoint) if checkpoint is not None else None
    state = {"step": 0, "tokens": 0, "seconds": 0.0, "since_fired": torch.zeros(d_sae, dtype=torch.long)}
    if checkpoint is not None and (checkpoint / "state.json").is_file():
        saved = json.loads((checkpoint / "state.json").read_text())
        if saved.get("meta") != json.loads(json.dumps(meta)):
            raise BadInput(f"checkpoint {checkpoint} is from a run with other settings; delete it to start afresh")
        state = _load_checkpoint(checkpoint, sae, opt)
    else:
        sample = torch.cat(list(_take(store.batches(hookpoint, branch, steps, 4096, cfg.seed, shards=train_shards),
                                      cfg.median_samples)))
        with torch.no_grad():
            sae.b_dec.copy_(geometric_median(sample[: cfg.median_samples]))

    start, step = time.perf_counter(), 0
    for epoch in range(cfg.epochs):
        for x in store.batches(hookpoint, branch, steps, cfg.batch_size, cfg.seed + epoch, shards=train_shards):
            step += 1
            if step <= state["step"]:
                continue  # consumed before the checkpoint
            if cfg.max_tokens is not None and state["tokens"] >= cfg.max_tokens:
                break
            mse, aux, n_dead = train_step(sae, opt, x, state["since_fired"], cfg)
            state["step"], state["tokens"] = step, state["tokens"] + len(x)
            if progress is not None:
                progress({"step": step, "tokens": state["tokens"], "mse": mse, "aux": aux, "dead": n_dead})
            if checkpoint is not None and step % cfg.checkpoint_every == 0:
                elapsed = state["seconds"] + time.perf_counter() - start
                _save_checkpoint(checkpoint, sae, opt, {**state, "seconds": elapsed, "meta": meta,
                                                        "since_fired": state["since_fired"].clone()})
    seconds = state["seconds"] + time.perf_counter() - start
    if state["tokens"] == 0:
        raise BadInput("no training tokens: the store is empty or everything is held out; collect more images")
    metrics = evaluate_sae(sae, store.batches(hookpoint, branch, steps, 8192, shuffle=False, shards=eval_shards))
    metrics.update(train_tokens=state["tokens"], train_steps=state["step"], train_seconds=round(seconds, 2),
                   tokens_per_second=state["tokens"] / max(seconds, 1e-9),
                   dead_at_end=float((state["since_fired"] >= cfg.dead_tokens).float().mean()),
                   eval_shards=eval_shards)
    sae.metadata["metrics"] = {k: v for k, v in metrics.items() if k != "eval_shards"}
    if checkpoint is not None:
        shutil.rmtree(checkpoint, ignore_errors=True)
    return sae, metrics


def _take(batches: Iterator[torch.Tensor], n: int) -> Iterator[torch.Tensor]:
    seen = 0
    for x in batches:
        if seen >= n:
            return
        seen += len(x)
        yield x
