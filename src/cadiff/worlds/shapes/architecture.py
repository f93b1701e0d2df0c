"""Configs of the embedded shapes model and its evaluator: stock diffusers / transformers classes only.

Example:
    >>> from cadiff.worlds.shapes.architecture import ShapesModelConfig, build_tokenizer
    >>> build_tokenizer()("a red circle").input_ids
    [1, 4, 9, 21, 2, 0, 0, 0]
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from cadiff.worlds.shapes.world import COLOURS, SHAPES, TEXTURES

SPECIAL_TOKENS = ("<|pad|>", "<|startoftext|>", "<|endoftext|>", "<|unk|>")
VOCAB: tuple[str, ...] = SPECIAL_TOKENS + ("a", "an", "shape", "image", "of") + COLOURS + TEXTURES + SHAPES
MAX_TOKENS = 8


def build_tokenizer():
    """A word-level tokenizer over the closed shapes vocabulary, as a transformers fast tokenizer."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(VOCAB)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<|unk|>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="<|startoftext|> $A <|endoftext|>",
        special_tokens=[("<|startoftext|>", 1), ("<|endoftext|>", 2)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        model_max_length=MAX_TOKENS,
        bos_token="<|startoftext|>",
        eos_token="<|endoftext|>",
        unk_token="<|unk|>",
        pad_token="<|pad|>",
        padding_side="right",
    )


@dataclass
class ShapesModelConfig:
    """Sizes of the embedded model; the defaults are the shipped model, `tiny()` is for tests."""

    vae_channels: tuple[int, ...] = (32, 64)
    unet_channels: tuple[int, ...] = (32, 64, 128)
    text_width: int = 128
    text_layers: int = 2
    attention_head_dim: int = 4
    norm_groups: int = 32
    prediction_type: str = "v_prediction"
    beta_schedule: str = "linear"
    beta_start: float = 1e-4
    beta_end: float = 0.02

    @classmethod
    def tiny(cls) -> "ShapesModelConfig":
        """A few-thousand-parameter variant that trains in seconds (tests)."""
        return cls(vae_channels=(8, 8), unet_channels=(8, 16, 16), text_width=16, text_layers=1, norm_groups=4)

    def to_dict(self) -> dict:
        return asdict(self)


def build_vae(cfg: ShapesModelConfig):
    """32x32x3 images to 16x16x4 latents."""
    from diffusers import AutoencoderKL

    n = len(cfg.vae_channels)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        sample_size=32,
        down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=cfg.vae_channels,
        layers_per_block=1,
        norm_num_groups=min(cfg.norm_groups, min(cfg.vae_channels)),
    )


def build_text_encoder(cfg: ShapesModelConfig):
    from transformers import CLIPTextConfig, CLIPTextModel

    return CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(VOCAB),
            hidden_size=cfg.text_width,
            intermediate_size=cfg.text_width * 2,
            num_hidden_layers=cfg.text_layers,
            num_attention_heads=4,
            max_position_embeddings=MAX_TOKENS,
            projection_dim=cfg.text_width,
            pad_token_id=0,
            bos_token_id=1,
            eos_token_id=2,
        )
    )


def build_unet(cfg: ShapesModelConfig):
    """An SD-style UNet2DConditionModel: cross-attention transformer blocks at 16x16, 8x8 and in the mid block."""
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=16,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=cfg.unet_channels,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=cfg.text_width,
        attention_head_dim=cfg.attention_head_dim,
        norm_num_groups=cfg.norm_groups,
    )


def scheduler_kwargs(cfg: ShapesModelConfig) -> dict:
    return dict(
        num_train_timesteps=1000,
        beta_schedule=cfg.beta_schedule,
        beta_start=cfg.beta_start,
        beta_end=cfg.beta_end,
        prediction_type=cfg.prediction_type,
        clip_sample=False,
    )


def build_sampling_scheduler(cfg: ShapesModelConfig):
    """DDIM with Stable Diffusion's spacing conventions; no clipping is needed with v-prediction."""
    from diffusers import DDIMScheduler

    return DDIMScheduler(**scheduler_kwargs(cfg), set_alpha_to_one=False, steps_offset=1, timestep_spacing="leading")


@dataclass
class EvaluatorConfig:
    """Widths of the evaluator CNN."""

    channels: tuple[int, ...] = (32, 64, 128)
    heads: dict[str, int] = field(default_factory=lambda: {"shape": len(SHAPES), "colour": len(COLOURS), "texture": len(TEXTURES)})


class ShapesClassifier(nn.Module):
    """A small CNN with one head per attribute; input (N, 3, 32, 32) in [0, 1]."""

    def __init__(self, cfg: EvaluatorConfig | None = None):
        super().__init__()
        cfg = cfg or EvaluatorConfig()
        layers: list[nn.Module] = []
        cin = 3
        for cout in cfg.channels:
            layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU()]
            layers += [nn.Conv2d(cout, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(2)]
            cin = cout
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.heads = nn.ModuleDict({name: nn.Linear(cin, n) for name, n in cfg.heads.items()})

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.features((x - 0.5) / 0.5)
        return {name: head(h) for name, head in self.heads.items()}
