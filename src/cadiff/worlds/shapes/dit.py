"""The embedded model's transformer sibling: an SD3-style MMDiT trained with rectified flow on the shapes world, as a
stock diffusers `StableDiffusion3Pipeline` (two small CLIP text encoders, no T5, the shipped VAE), so the method
can be measured on a DiT with exact labels beside the U-Net.

The pipeline fills the absent T5 stream with `max_sequence_length` (256) zero tokens. They stay identical through
every joint block (the same input, the same adaptive norm, no position embedding), so softmax attention over them
equals attention over one of them with log(256) added to its logit. Training runs that one token
(`RepeatedLastToken`, an attention processor: 73 tokens a sample instead of 328), and the saved model samples with
the stock pipeline and its defaults.

Example:
    >>> from cadiff.worlds.shapes.dit import DiTTrainConfig, train_shapes_dit
    >>> train_shapes_dit("build/shapes-dit", DiTTrainConfig.tiny())  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import math
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from cadiff.io.files import atomic_dir, write_json
from cadiff.io.runs import versions
from cadiff.models.loading import mark_model
from cadiff.worlds.shapes.architecture import MAX_TOKENS, VOCAB, build_tokenizer
from cadiff.worlds.shapes.evaluator import shipped_path
from cadiff.worlds.shapes.train import SHAPES_MODEL_INFO, _device_name, _lr, _to_float, latent_statistics, optimise
from cadiff.worlds.shapes.world import render_random, training_caption

T5_TOKENS = 256  # StableDiffusion3Pipeline's default max_sequence_length: its zero T5 tokens


@dataclass
class DiTConfig:
    """Sizes of the shapes MMDiT; the defaults are the recipe's model, `tiny()` is for tests."""

    width: int = 128
    heads: int = 4
    layers: int = 6
    patch_size: int = 2
    text_width: int = 128
    text_layers: int = 3
    qk_norm: str | None = "rms_norm"
    shift: float = 1.0  # the flow-matching schedule's shift (SD3 uses 3.0 at 1024 px; these latents are 16x16)

    @classmethod
    def tiny(cls) -> "DiTConfig":
        return cls(width=16, heads=2, layers=2, text_width=16, text_layers=2)


def build_dit_text_encoder(cfg: DiTConfig):
    """A CLIP text encoder with projection (SD3 reads its penultimate layer and its pooled projection)."""
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    return CLIPTextModelWithProjection(CLIPTextConfig(
        vocab_size=len(VOCAB), hidden_size=cfg.text_width, intermediate_size=cfg.text_width * 2,
        num_hidden_layers=cfg.text_layers, num_attention_heads=4 if cfg.text_width % 4 == 0 else 1,
        max_position_embeddings=MAX_TOKENS, projection_dim=cfg.text_width, pad_token_id=0, bos_token_id=1,
        eos_token_id=2))


def build_transformer(cfg: DiTConfig):
    """An SD3Transformer2DModel on the shipped VAE's 16x16x4 latents."""
    from diffusers import SD3Transformer2DModel

    return SD3Transformer2DModel(
        sample_size=16, patch_size=cfg.patch_size, in_channels=4, out_channels=4, num_layers=cfg.layers,
        attention_head_dim=cfg.width // cfg.heads, num_attention_heads=cfg.heads,
        joint_attention_dim=2 * cfg.text_width, caption_projection_dim=cfg.width,
        pooled_projection_dim=2 * cfg.text_width, pos_embed_max_size=16 // cfg.patch_size, qk_norm=cfg.qk_norm)


def build_flow_scheduler(cfg: DiTConfig):
    from diffusers import FlowMatchEulerDiscreteScheduler

    return FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=cfg.shift)


class RepeatedLastToken:
    """Joint attention (diffusers' `JointAttnProcessor2_0`, the same projections) where the last text token stands
    for `count` identical tokens: its key's logit gets log(count), which is exactly softmax over `count` copies."""

    def __init__(self, count: int):
        self.log_count = math.log(count)

    @staticmethod
    def _heads(x: torch.Tensor, attn, norm=None) -> torch.Tensor:
        x = x.view(x.shape[0], -1, attn.heads, x.shape[-1] // attn.heads).transpose(1, 2)
        return norm(x) if norm is not None else x

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, *args, **kwargs):
        n_image = hidden_states.shape[1]
        q = torch.cat([self._heads(attn.to_q(hidden_states), attn, attn.norm_q),
                       self._heads(attn.add_q_proj(encoder_hidden_states), attn, attn.norm_added_q)], dim=2)
        k = torch.cat([self._heads(attn.to_k(hidden_states), attn, attn.norm_k),
                       self._heads(attn.add_k_proj(encoder_hidden_states), attn, attn.norm_added_k)], dim=2)
        v = torch.cat([self._heads(attn.to_v(hidden_states), attn),
                       self._heads(attn.add_v_proj(encoder_hidden_states), attn)], dim=2)
        bias = torch.zeros(k.shape[2], dtype=q.dtype, device=q.device)
        bias[-1] = self.log_count
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.view(1, 1, 1, -1))
        out = out.transpose(1, 2).reshape(out.shape[0], -1, attn.heads * out.shape[-1]).to(q.dtype)
        image, text = out[:, :n_image], out[:, n_image:]
        image = attn.to_out[1](attn.to_out[0](image))
        if attn.context_pre_only:
            return image, text
        return image, attn.to_add_out(text)


def shapes_dit_pipeline(cfg: DiTConfig, vae=None):
    """A new (random) shapes MMDiT pipeline around the shipped VAE (its `shift_factor` set to 0, which SD3 reads)."""
    from diffusers import AutoencoderKL, StableDiffusion3Pipeline

    if vae is None:
        vae = AutoencoderKL.from_pretrained(shipped_path("pipeline") / "vae")
    vae.register_to_config(shift_factor=0.0)
    tokenizer = build_tokenizer()
    return StableDiffusion3Pipeline(
        transformer=build_transformer(cfg), scheduler=build_flow_scheduler(cfg), vae=vae.requires_grad_(False),
        text_encoder=build_dit_text_encoder(cfg), tokenizer=tokenizer, text_encoder_2=build_dit_text_encoder(cfg),
        tokenizer_2=tokenizer, text_encoder_3=None, tokenizer_3=None)


@dataclass
class DiTTrainConfig:
    """Every setting of a DiT training run (the shipped VAE and evaluator are reused, not retrained)."""

    seed: int = 0
    n_images: int = 30_000
    steps: int = 4_000
    batch: int = 256
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup: int = 200
    ema: float = 0.998
    snapshot_every: int = 1_000  # also save the EMA model every this many steps (snapshots/step-N/); 0: none
    model: DiTConfig = field(default_factory=DiTConfig)

    @classmethod
    def tiny(cls) -> "DiTTrainConfig":
        return cls(n_images=64, steps=3, batch=8, warmup=1, snapshot_every=2, model=DiTConfig.tiny())


def _with_nets(pipe, nets):
    """The pipeline `pipe` with its transformer and two text encoders replaced by `nets` (CPU copies, for saving)."""
    from diffusers import StableDiffusion3Pipeline

    transformer, text_encoder, text_encoder_2 = (copy.deepcopy(net).cpu().eval() for net in nets)
    return StableDiffusion3Pipeline(**{**pipe.components, "transformer": transformer, "text_encoder": text_encoder,
                                       "text_encoder_2": text_encoder_2})


def _train(pipe, cfg: DiTTrainConfig, data, log: dict, device: torch.device, snapshots: Path | None = None):
    gen = torch.Generator().manual_seed(cfg.seed + 3)
    rng = np.random.default_rng(cfg.seed + 3)
    t0 = time.time()
    mean, std = latent_statistics(pipe.vae.to(device), _to_float(data.images).to(device) * 2 - 1)
    pipe.vae.cpu()
    log["latents"] = {"seconds": round(time.time() - t0, 1)}
    nets = [pipe.transformer, pipe.text_encoder, pipe.text_encoder_2]
    for net in nets:
        net.to(device).train()
    emas = [copy.deepcopy(net).requires_grad_(False) for net in nets]  # before the processor: they keep the stock one
    params = [p for net in nets for p in net.parameters()]
    ema_params = [p for net in emas for p in net.parameters()]
    pipe.transformer.set_attn_processor(RepeatedLastToken(T5_TOKENS))
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.01)
    scaling, losses, t0 = pipe.vae.config.scaling_factor, [], time.time()
    bar = tqdm(range(cfg.steps), desc="dit+text", unit="step")
    for step in bar:
        idx = torch.randint(0, len(mean), (cfg.batch,), generator=gen)
        captions = [training_caption(data.shapes[i], data.colours[i], data.textures[i], rng) for i in idx.tolist()]
        z0 = (mean[idx] + std[idx] * torch.randn(mean[idx].shape, generator=gen).to(device)) * scaling
        noise = torch.randn(z0.shape, generator=gen).to(device)
        sigma = torch.sigmoid(torch.randn(len(z0), generator=gen)).to(device)  # SD3's logit-normal sampling
        zt = (1 - sigma[:, None, None, None]) * z0 + sigma[:, None, None, None] * noise
        embeds, _, pooled, _ = pipe.encode_prompt(captions, None, None, device=device,
                                                  do_classifier_free_guidance=False, max_sequence_length=1)
        for g in opt.param_groups:
            g["lr"] = _lr(step, cfg.steps, cfg.lr, cfg.min_lr, cfg.warmup)
        pred = pipe.transformer(hidden_states=zt, timestep=sigma * 1000, encoder_hidden_states=embeds,
                                pooled_projections=pooled, return_dict=False)[0]
        losses.append(optimise(opt, F.mse_loss(pred, noise - z0), params, ema_params, cfg.ema))  # the velocity
        bar.set_postfix(loss=f"{np.mean(losses[-100:]):.4f}")
        if snapshots is not None and cfg.snapshot_every and (step + 1) % cfg.snapshot_every == 0 \
                and step + 1 < cfg.steps:
            snapshot = _with_nets(pipe, emas)
            mark_model(snapshot, SHAPES_MODEL_INFO)
            snapshot.save_pretrained(snapshots / f"step-{step + 1}")
    log["dit"] = {"steps": cfg.steps, "seconds": round(time.time() - t0, 1),
                  "seconds_per_step": round((time.time() - t0) / max(1, cfg.steps), 3),
                  "final_loss": float(np.mean(losses[-100:])), "loss_curve": losses[:: max(1, cfg.steps // 100)]}
    pipe.transformer, pipe.text_encoder, pipe.text_encoder_2 = (net.cpu().eval() for net in emas)
    return pipe


def train_shapes_dit(out_dir: str | Path, cfg: DiTTrainConfig | None = None, overwrite: bool = False,
                     device: str = "cpu") -> Path:
    """Train the shapes MMDiT and its two text encoders into `out_dir` (new): `pipeline/` (a stock diffusers
    StableDiffusion3Pipeline on the shipped VAE), `evaluator/` (the shipped one), `train_log.json` and, every
    `cfg.snapshot_every` steps, the EMA model so far in `snapshots/step-N/` (same layout as `pipeline/`). Every random
    draw comes from CPU generators seeded from `cfg.seed`, so a GPU run follows the same recipe."""
    cfg = cfg or DiTTrainConfig()
    dev = torch.device(device)
    torch.manual_seed(cfg.seed)
    log: dict = {}
    with atomic_dir(out_dir, overwrite=overwrite) as tmp:
        t0 = time.time()
        data = render_random(cfg.n_images, seed=cfg.seed)
        log["data"] = {"n_images": cfg.n_images, "seconds": round(time.time() - t0, 1)}
        pipe = _train(shapes_dit_pipeline(cfg.model), cfg, data, log, dev, snapshots=tmp / "snapshots")
        mark_model(pipe, SHAPES_MODEL_INFO)
        pipe.save_pretrained(tmp / "pipeline")
        shutil.copytree(shipped_path("evaluator"), tmp / "evaluator")
        log["total"] = {"seconds": round(time.time() - t0, 1)}
        write_json(tmp / "train_log.json", {"config": asdict(cfg), "device": _device_name(dev), "phases": log,
                                            "versions": versions()})
    return Path(out_dir)
