"""Training recipe of the embedded shapes model and its evaluator, reproducible from one seed.

Phases, in order: render the data set; train the evaluator CNN; train the VAE; encode the data set;
train UNet and text encoder jointly with v-prediction (EMA weights are saved). The output folder gets
`pipeline/` (a stock diffusers StableDiffusionPipeline), `evaluator/` and `train_log.json`.

Example:
    >>> from cadiff.worlds.shapes.train import TrainConfig, train_shapes_model
    >>> train_shapes_model("build/shapes", TrainConfig.tiny())  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from cadiff.errors import BadInput
from cadiff.io.files import atomic_dir, write_json
from cadiff.models.loading import mark_model
from cadiff.io.runs import versions
from cadiff.worlds.shapes.architecture import (
    EvaluatorConfig,
    ShapesClassifier,
    ShapesModelConfig,
    build_sampling_scheduler,
    build_text_encoder,
    build_tokenizer,
    build_unet,
    build_vae,
    scheduler_kwargs,
)
from cadiff.worlds.shapes.evaluator import ShapesEvaluator, save_evaluator
from cadiff.worlds.shapes.world import COLOURS, SHAPES, TEXTURES, check_values, render_random, training_caption


SHAPES_MODEL_INFO = {"world": "shapes", "num_inference_steps": 25, "guidance_scale": 4.0}


@dataclass
class TrainConfig:
    """Every setting of a training run; the defaults rebuild the shipped model."""

    seed: int = 0
    n_images: int = 30_000
    n_val: int = 3_000
    evaluator_epochs: int = 3
    evaluator_batch: int = 128
    evaluator_lr: float = 2e-3
    vae_steps: int = 1_500
    vae_batch: int = 32
    vae_lr: float = 2e-3
    unet_steps: int = 4_000
    unet_batch: int = 256
    unet_lr: float = 1e-3
    unet_min_lr: float = 1e-4
    warmup: int = 100
    ema: float = 0.998
    exclude: tuple[str, ...] = ()  # values the denoiser never sees (a model that never saw a concept)
    model: ShapesModelConfig = field(default_factory=ShapesModelConfig)
    evaluator: EvaluatorConfig = field(default_factory=EvaluatorConfig)

    def __post_init__(self):
        self.exclude = (self.exclude,) if isinstance(self.exclude, str) else tuple(self.exclude)
        check_values(self.exclude)
        for values in (SHAPES, COLOURS, TEXTURES):
            if set(values) <= set(self.exclude):
                raise BadInput(f"exclude leaves no image to train on: it names every one of {', '.join(values)}")

    @classmethod
    def tiny(cls) -> "TrainConfig":
        """Seconds-long settings for tests."""
        return cls(
            n_images=96,
            n_val=32,
            evaluator_epochs=1,
            evaluator_batch=32,
            vae_steps=3,
            vae_batch=16,
            unet_steps=3,
            unet_batch=16,
            warmup=1,
            model=ShapesModelConfig.tiny(),
            evaluator=EvaluatorConfig(channels=(4, 8, 8)),
        )


def _lr(step: int, total: int, base: float, minimum: float, warmup: int) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return minimum + 0.5 * (base - minimum) * (1 + math.cos(math.pi * progress))


def _to_float(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0


class _Log:
    def __init__(self) -> None:
        self.phases: dict[str, dict] = {}

    def phase(self, name: str, **info) -> None:
        self.phases.setdefault(name, {}).update(info)


def _train_evaluator(cfg: TrainConfig, data, val, log: _Log, device: torch.device) -> ShapesClassifier:
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    model = ShapesClassifier(cfg.evaluator).to(device)
    x_all = _to_float(data.images).to(device)
    labels = {k: torch.from_numpy(v).to(device) for k, v in data.labels().items()}
    steps = cfg.evaluator_epochs * math.ceil(len(data) / cfg.evaluator_batch)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.evaluator_lr, weight_decay=1e-4)
    losses, t0 = [], time.time()
    bar = tqdm(range(steps), desc="evaluator", unit="step")
    for step in bar:
        idx = torch.randint(0, len(data), (cfg.evaluator_batch,), generator=gen).to(device)
        x = x_all[idx]
        x = x + 0.05 * torch.randn(x.shape, generator=gen).to(device)  # robustness to generated images
        blur = (torch.rand(len(x), generator=gen) < 0.3).to(device)
        x[blur] = F.avg_pool2d(F.pad(x[blur], (1, 1, 1, 1), mode="replicate"), 3, stride=1)
        for g in opt.param_groups:
            g["lr"] = _lr(step, steps, cfg.evaluator_lr, cfg.evaluator_lr * 0.01, 20)
        out = model(x)
        loss = sum(F.cross_entropy(out[k], labels[k][idx]) for k in out)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}")
    model.cpu().eval()
    acc = classifier_accuracy(model, val.images, val.labels())
    log.phase("evaluator", steps=steps, seconds=round(time.time() - t0, 1), final_loss=float(np.mean(losses[-50:])),
              held_out_accuracy=acc, loss_curve=losses[:: max(1, steps // 100)])
    return model


def classifier_accuracy(model: ShapesClassifier, images: np.ndarray, labels: dict[str, np.ndarray]) -> dict[str, float]:
    """Per-attribute accuracy of `model` on uint8 images (scored the way the shipped evaluator scores)."""
    probs = ShapesEvaluator(model).probabilities(images)
    return {k: float((probs[k].argmax(1) == labels[k]).mean()) for k in labels}


def _train_vae(cfg: TrainConfig, data, log: _Log, device: torch.device):
    gen = torch.Generator().manual_seed(cfg.seed + 2)
    vae = build_vae(cfg.model).to(device)
    x_all = (_to_float(data.images) * 2 - 1).to(device)
    opt = torch.optim.AdamW(vae.parameters(), lr=cfg.vae_lr)
    losses, t0 = [], time.time()
    bar = tqdm(range(cfg.vae_steps), desc="vae", unit="step")
    for step in bar:
        x = x_all[torch.randint(0, len(x_all), (cfg.vae_batch,), generator=gen).to(device)]
        for g in opt.param_groups:
            g["lr"] = _lr(step, cfg.vae_steps, cfg.vae_lr, cfg.vae_lr * 0.05, min(50, cfg.warmup))
        post = vae.encode(x).latent_dist
        z = post.mean + post.std * torch.randn(post.mean.shape, generator=gen).to(device)
        rec = vae.decode(z).sample
        kl = post.kl().mean() / z[0].numel()
        loss = F.mse_loss(rec, x) + 0.5 * F.l1_loss(rec, x) + 1e-5 * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}")
    vae.eval()
    mean_t, std_t = latent_statistics(vae, x_all)  # of the whole data set, for the denoiser phase
    scaling = float(1.0 / mean_t.std())
    vae.cpu()
    vae.register_to_config(scaling_factor=scaling)
    log.phase("vae", steps=cfg.vae_steps, seconds=round(time.time() - t0, 1), final_loss=float(np.mean(losses[-50:])),
              scaling_factor=scaling, loss_curve=losses[:: max(1, cfg.vae_steps // 100)])
    return vae, mean_t, std_t


def latent_statistics(vae, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean and std of `vae`'s posterior for every image of `x` (N, 3, H, W) in [-1, 1], 256 at a time."""
    mean, std = [], []
    with torch.no_grad():
        for i in range(0, len(x), 256):
            post = vae.encode(x[i : i + 256]).latent_dist
            mean.append(post.mean)
            std.append(post.std)
    return torch.cat(mean), torch.cat(std)


def _train_denoiser(cfg: TrainConfig, data, mean: torch.Tensor, std: torch.Tensor, scaling: float, log: _Log,
                    device: torch.device):
    from diffusers import DDPMScheduler

    torch.manual_seed(cfg.seed + 3)
    gen = torch.Generator().manual_seed(cfg.seed + 3)
    rng = np.random.default_rng(cfg.seed + 3)
    tokenizer = build_tokenizer()
    unet, text_encoder = build_unet(cfg.model).to(device), build_text_encoder(cfg.model).to(device)
    noise_sched = DDPMScheduler(**scheduler_kwargs(cfg.model))
    params = list(unet.parameters()) + list(text_encoder.parameters())
    ema_unet, ema_text = copy.deepcopy(unet).requires_grad_(False), copy.deepcopy(text_encoder).requires_grad_(False)
    ema_params = list(ema_unet.parameters()) + list(ema_text.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.unet_lr, weight_decay=0.01)
    losses, t0 = [], time.time()
    bar = tqdm(range(cfg.unet_steps), desc="unet+text", unit="step")
    for step in bar:
        idx = torch.randint(0, len(mean), (cfg.unet_batch,), generator=gen)
        captions = [training_caption(data.shapes[i], data.colours[i], data.textures[i], rng) for i in idx.tolist()]
        idx = idx.to(device)
        z0 = (mean[idx] + std[idx] * torch.randn(mean[idx].shape, generator=gen).to(device)) * scaling
        ids = tokenizer(captions, padding="max_length", max_length=tokenizer.model_max_length,
                        return_tensors="pt").input_ids.to(device)
        noise = torch.randn(z0.shape, generator=gen).to(device)
        t = torch.randint(0, noise_sched.config.num_train_timesteps, (len(z0),), generator=gen).to(device)
        zt = noise_sched.add_noise(z0, noise, t)
        target = noise_sched.get_velocity(z0, noise, t) if cfg.model.prediction_type == "v_prediction" else noise
        for g in opt.param_groups:
            g["lr"] = _lr(step, cfg.unet_steps, cfg.unet_lr, cfg.unet_min_lr, cfg.warmup)
        pred = unet(zt, t, encoder_hidden_states=text_encoder(ids)[0]).sample
        losses.append(optimise(opt, F.mse_loss(pred, target), params, ema_params, cfg.ema))
        bar.set_postfix(loss=f"{np.mean(losses[-100:]):.4f}")
    log.phase("unet", steps=cfg.unet_steps, seconds=round(time.time() - t0, 1), final_loss=float(np.mean(losses[-100:])),
              loss_curve=losses[:: max(1, cfg.unet_steps // 100)])
    return ema_unet.cpu().eval(), ema_text.cpu().eval(), tokenizer


def optimise(opt, loss: torch.Tensor, params: list, ema_params: list, ema: float) -> float:
    """One step of a denoiser's training: the gradient clipped at norm 1, the optimiser step, the EMA update."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    with torch.no_grad():
        torch._foreach_lerp_(ema_params, params, 1 - ema)
    return loss.item()


def _device_name(dev: torch.device) -> str:
    return torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"{dev.type}, {torch.get_num_threads()} threads"


def train_shapes_model(out_dir: str | Path, cfg: TrainConfig | None = None, overwrite: bool = False,
                       device: str = "cpu") -> Path:
    """Train the embedded model and evaluator from scratch into `out_dir` (which must not exist yet).

    All random draws come from CPU generators, so a GPU run sees the same data, noise and timesteps as a
    CPU run; only floating-point rounding differs (two CPU runs give bit-identical weights; GPU kernels need not).
    """
    from diffusers import StableDiffusionPipeline

    cfg = cfg or TrainConfig()
    dev = torch.device(device)
    out_dir = Path(out_dir)
    torch.manual_seed(cfg.seed)
    log = _Log()
    with atomic_dir(out_dir, overwrite=overwrite) as tmp:
        t0 = time.time()
        data = render_random(cfg.n_images, seed=cfg.seed)
        val = render_random(cfg.n_val, seed=cfg.seed + 10_000)
        log.phase("data", n_images=cfg.n_images, seconds=round(time.time() - t0, 1))
        evaluator = _train_evaluator(cfg, data, val, log, dev)
        save_evaluator(evaluator, cfg.evaluator, tmp / "evaluator")
        vae, mean, std = _train_vae(cfg, data, log, dev)
        with torch.no_grad():
            rec = (vae.decode(vae.encode(_to_float(val.images) * 2 - 1).latent_dist.mean).sample + 1) / 2
            rec_u8 = (rec.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()
        log.phase("vae", evaluator_accuracy_on_reconstructions=classifier_accuracy(evaluator, rec_u8, val.labels()),
                  reconstruction_mse=float((((rec_u8.astype(np.float32) - val.images) / 255) ** 2).mean()))
        if cfg.exclude:  # the evaluator and the VAE see everything; the denoiser never sees these values
            keep = data.shows_none(cfg.exclude)
            on_device = torch.from_numpy(keep).to(mean.device)
            data, mean, std = data[keep], mean[on_device], std[on_device]
            log.phase("data", excluded=list(cfg.exclude), denoiser_images=len(data))
        unet, text_encoder, tokenizer = _train_denoiser(cfg, data, mean, std, vae.config.scaling_factor, log, dev)
        pipe = StableDiffusionPipeline(
            vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
            scheduler=build_sampling_scheduler(cfg.model), safety_checker=None, feature_extractor=None,
            requires_safety_checker=False,
        )
        mark_model(pipe, SHAPES_MODEL_INFO)
        pipe.save_pretrained(tmp / "pipeline")
        log.phase("total", seconds=round(time.time() - t0, 1))
        write_json(tmp / "train_log.json", {"config": asdict(cfg), "device": _device_name(dev), "phases": log.phases,
                                            "versions": versions()})
    return out_dir
