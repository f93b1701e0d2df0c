"""Tiny random pipelines built from configs, shaped like SD 1.x, SD 2.x, SDXL and SD3 (no weights are downloaded)."""

from __future__ import annotations

import torch

from cadiff.worlds.shapes.architecture import VOCAB, build_tokenizer


def _vae():
    from diffusers import AutoencoderKL

    return AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, sample_size=16,
                         down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                         block_out_channels=(8, 8), layers_per_block=1, norm_num_groups=4)


def _text(width: int, with_projection: bool = False, layers: int = 1, act: str = "quick_gelu"):
    """A tiny CLIP text encoder; `act` "gelu" is OpenCLIP's (SD 2.x's encoder), "quick_gelu" OpenAI CLIP's."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    cfg = CLIPTextConfig(vocab_size=len(VOCAB), hidden_size=width, intermediate_size=2 * width, num_hidden_layers=layers,
                         num_attention_heads=2, max_position_embeddings=8, projection_dim=width, pad_token_id=0,
                         bos_token_id=1, eos_token_id=2, hidden_act=act)
    return (CLIPTextModelWithProjection if with_projection else CLIPTextModel)(cfg)


def _ddim(prediction_type: str = "epsilon"):
    from diffusers import DDIMScheduler

    return DDIMScheduler(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                         prediction_type=prediction_type, clip_sample=False, set_alpha_to_one=False, steps_offset=1)


# What a tiny build sets that a saved folder does not keep: the pipeline call's defaults its class changes for the
# tiny size (`tiny_class`), and attributes set on the instance (`tiny_attributes`). `reloaded` puts both back on a
# pipeline loaded from a saved folder.
TINY_CALL = {
    "pixart": {"use_resolution_binning": False, "clean_caption": False, "max_sequence_length": 8},
    "sana": {"height": 32, "width": 32, "use_resolution_binning": False, "complex_human_instruction": None,
             "max_sequence_length": 8},
    "chroma": {"max_sequence_length": 8},
    "flux2": {"max_sequence_length": 8, "text_encoder_out_layers": (1, 1, 1)},
    "flux2-klein": {"max_sequence_length": 8, "text_encoder_out_layers": (1, 1, 1)},
    "zimage": {"height": 16, "width": 16, "max_sequence_length": 8},
}
TINY_ATTRIBUTES = {
    "flux": {"default_sample_size": 8},
    "qwenimage": {"prompt_template_encode": "{}", "prompt_template_encode_start_idx": 1, "default_sample_size": 8},
    "chroma": {"default_sample_size": 8},
    "flux2": {"default_sample_size": 8},
    "flux2-klein": {"default_sample_size": 8},
    "hunyuanimage": {"prompt_template_encode": "{}", "prompt_template_encode_start_idx": 1, "tokenizer_max_length": 8,
                     "tokenizer_2_max_length": 8, "default_sample_size": 8},
    "hidream": {"default_sample_size": 8},
}


def tiny_class(cls, name: str):
    """`cls` with the call defaults of the tiny `name` (TINY_CALL); it keeps the stock class's name, so a saved folder
    names the stock class, which loads it."""
    import inspect

    defaults = TINY_CALL[name]

    def __call__(self, *args, **kw):
        return cls.__call__(self, *args, **{**defaults, **kw})

    stock = inspect.signature(cls.__call__)  # its signature says the tiny defaults, as readers of defaults expect
    __call__.__signature__ = stock.replace(parameters=[
        p.replace(default=defaults[p.name]) if p.name in defaults else p for p in stock.parameters.values()])
    return type(cls.__name__, (cls,), {"__call__": __call__})


def tiny_attributes(pipe, name: str):
    """`pipe` with the instance attributes of the tiny `name` (TINY_ATTRIBUTES) and no progress bar."""
    for key, value in TINY_ATTRIBUTES.get(name, {}).items():
        setattr(pipe, key, value)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def reloaded(folder, name: str, **components):
    """A tiny pipeline saved to `folder`, loaded back by stock diffusers with what the folder does not keep."""
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(str(folder), **components)
    if name in TINY_CALL:
        pipe.__class__ = tiny_class(type(pipe), name)
    return tiny_attributes(pipe, name)


def tiny_sd3(seed: int = 0):
    """A random SD3-style pipeline: an MMDiT with two joint blocks, flow matching, two CLIP encoders, no T5."""
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline

    torch.manual_seed(seed)
    transformer = SD3Transformer2DModel(sample_size=8, patch_size=2, in_channels=4, out_channels=4, num_layers=2,
                                        attention_head_dim=8, num_attention_heads=2, joint_attention_dim=16 + 24,
                                        caption_projection_dim=16, pooled_projection_dim=16 + 24, pos_embed_max_size=16)
    vae = _vae()
    vae.register_to_config(shift_factor=0.0)
    clip_l, clip_g = _text(16, True), _text(24, True)  # CLIP-G wider than CLIP-L, as in SD3: diffusers tells them so
    with torch.no_grad():
        clip_l.text_projection.weight.copy_(torch.eye(16))  # SD3 single files carry none for CLIP-L: identity
    pipe = StableDiffusion3Pipeline(transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(), vae=vae,
                                    text_encoder=clip_l, tokenizer=build_tokenizer(),
                                    text_encoder_2=clip_g, tokenizer_2=build_tokenizer(),
                                    text_encoder_3=None, tokenizer_3=None)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def tiny_pixart(seed: int = 0):
    """A random PixArt-α-style pipeline: a DiT with learned variance on a DPM-Solver schedule, a tiny T5 encoder.

    The pipeline class is PixArtAlphaPipeline with two defaults changed for the tiny size: no resolution binning
    (it knows only PixArt's real sample sizes) and no caption cleaning (it needs bs4/ftfy)."""
    from diffusers import DPMSolverMultistepScheduler, PixArtAlphaPipeline, PixArtTransformer2DModel
    from transformers import T5Config, T5EncoderModel

    TinyPixArtPipeline = tiny_class(PixArtAlphaPipeline, "pixart")

    torch.manual_seed(seed)
    transformer = PixArtTransformer2DModel(num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=8,
                                           num_layers=2, cross_attention_dim=16, caption_channels=16, sample_size=8,
                                           patch_size=2, norm_num_groups=4, use_additional_conditions=False)
    t5 = T5EncoderModel(T5Config(vocab_size=len(VOCAB), d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2,
                                 pad_token_id=0, eos_token_id=2)).eval()  # built in training mode: no dropout
    pipe = TinyPixArtPipeline(tokenizer=build_tokenizer(), text_encoder=t5, vae=_vae(), transformer=transformer,
                              scheduler=DPMSolverMultistepScheduler())
    pipe.set_progress_bar_config(disable=True)
    return pipe


def tiny_flux(seed: int = 0, guidance_embeds: bool = True):
    """A random Flux-dev-style pipeline: one double and one single block on packed latents, distilled guidance,
    a CLIP and a tiny T5 encoder, flow matching with the resolution-dependent shift. Without `guidance_embeds`
    (Flux-schnell-like), it is guided by true CFG."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(seed)
    transformer = FluxTransformer2DModel(patch_size=1, in_channels=16, num_layers=1, num_single_layers=1,
                                         attention_head_dim=8, num_attention_heads=2, joint_attention_dim=16,
                                         pooled_projection_dim=16, guidance_embeds=guidance_embeds,
                                         axes_dims_rope=(4, 2, 2))
    vae = _vae()
    vae.register_to_config(shift_factor=0.0)
    t5 = T5EncoderModel(T5Config(vocab_size=len(VOCAB), d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2,
                                 pad_token_id=0, eos_token_id=2)).eval()  # built in training mode: no dropout
    scheduler = FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                                                base_image_seq_len=256, max_image_seq_len=4096)
    pipe = FluxPipeline(scheduler=scheduler, vae=vae, text_encoder=_text(16), tokenizer=build_tokenizer(),
                        text_encoder_2=t5, tokenizer_2=build_tokenizer(), transformer=transformer)
    return tiny_attributes(pipe, "flux")  # 16 x 16 images (Flux's own default is 128 latents a side)


def tiny_sana(seed: int = 0):
    """A random Sana-style pipeline: a linear-attention DiT with a convolutional feed-forward, a tiny DC-AE and a
    tiny Gemma 2 encoder, flow matching. SanaPipeline with the tiny size's defaults: 32 x 32 images, no resolution
    binning and no instruction prepended to the prompt."""
    from diffusers import AutoencoderDC, FlowMatchEulerDiscreteScheduler, SanaPipeline, SanaTransformer2DModel
    from transformers import Gemma2Config, Gemma2Model

    TinySanaPipeline = tiny_class(SanaPipeline, "sana")

    torch.manual_seed(seed)
    transformer = SanaTransformer2DModel(in_channels=4, out_channels=4, num_attention_heads=2, attention_head_dim=8,
                                         num_layers=2, num_cross_attention_heads=2, cross_attention_head_dim=8,
                                         cross_attention_dim=16, caption_channels=16, mlp_ratio=2.5, sample_size=16,
                                         patch_size=4)
    vae = AutoencoderDC(in_channels=3, latent_channels=4, attention_head_dim=2,
                        encoder_block_types=("ResBlock", "ResBlock"), decoder_block_types=("ResBlock", "ResBlock"),
                        encoder_block_out_channels=(8, 8), decoder_block_out_channels=(8, 8),
                        encoder_qkv_multiscales=((), ()), decoder_qkv_multiscales=((), ()),
                        encoder_layers_per_block=(1, 1), decoder_layers_per_block=(1, 1),
                        upsample_block_type="interpolate", downsample_block_type="Conv", decoder_norm_types="rms_norm",
                        decoder_act_fns="silu", scaling_factor=0.41407)
    gemma = Gemma2Model(Gemma2Config(vocab_size=len(VOCAB), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                     num_attention_heads=2, num_key_value_heads=1, head_dim=8, pad_token_id=0)).eval()
    pipe = TinySanaPipeline(tokenizer=build_tokenizer(), text_encoder=gemma, vae=vae, transformer=transformer,
                            scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _qwen_vl_text(width: int = 16, layers: int = 1):
    """A tiny Qwen2.5-VL (the generation model: the pipelines read its language model's last hidden states; a
    one-block vision tower has to exist)."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    cfg = Qwen2_5_VLConfig(
        text_config=dict(vocab_size=len(VOCAB), hidden_size=width, intermediate_size=2 * width, num_hidden_layers=layers,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64,
                         rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 1, 1]},
                         pad_token_id=0, bos_token_id=1, eos_token_id=2),
        vision_config=dict(depth=1, hidden_size=16, intermediate_size=32, num_heads=2, out_hidden_size=width,
                           fullatt_block_indexes=[0]))
    return Qwen2_5_VLForConditionalGeneration(cfg).eval()


def tiny_qwenimage(seed: int = 0):
    """A random Qwen-Image-style pipeline: an MMDiT on packed latents guided by true CFG, a tiny Qwen2.5-VL encoder,
    a 3-D VAE normalised per channel. On the instance: no chat template (the word-level tokenizer has none of its
    tokens), so the pipeline drops only the BOS token in front of the prompt, and 16 x 16 images."""
    from diffusers import (AutoencoderKLQwenImage, FlowMatchEulerDiscreteScheduler, QwenImagePipeline,
                           QwenImageTransformer2DModel)

    torch.manual_seed(seed)
    transformer = QwenImageTransformer2DModel(patch_size=2, in_channels=16, out_channels=4, num_layers=2,
                                              attention_head_dim=8, num_attention_heads=2, joint_attention_dim=16,
                                              guidance_embeds=False, axes_dims_rope=(2, 2, 4))
    vae = AutoencoderKLQwenImage(base_dim=8, z_dim=4, dim_mult=[1, 2], num_res_blocks=1, attn_scales=[],
                                 temperal_downsample=[False], latents_mean=[0.1, -0.2, 0.0, 0.3],
                                 latents_std=[1.5, 0.5, 1.0, 2.0])
    scheduler = FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True, base_shift=0.5, max_shift=0.9,
                                                base_image_seq_len=256, max_image_seq_len=8192, shift_terminal=0.02,
                                                time_shift_type="exponential")
    pipe = QwenImagePipeline(scheduler=scheduler, vae=vae, text_encoder=_qwen_vl_text(), tokenizer=build_tokenizer(),
                             transformer=transformer)
    return tiny_attributes(pipe, "qwenimage")


def tiny_chroma(seed: int = 0):
    """A random Chroma-style pipeline: a Flux-shaped transformer (one double, one single block) whose blocks'
    modulations come from one small MLP, packed latents of a VAE with Flux's scaling and shift, a tiny T5, true CFG.
    ChromaPipeline with one default changed for the tiny size: prompts padded to 8 tokens (stock 512)."""
    from diffusers import ChromaPipeline, ChromaTransformer2DModel, FlowMatchEulerDiscreteScheduler
    from transformers import T5Config, T5EncoderModel

    TinyChromaPipeline = tiny_class(ChromaPipeline, "chroma")

    torch.manual_seed(seed)
    transformer = ChromaTransformer2DModel(patch_size=1, in_channels=16, num_layers=1, num_single_layers=1,
                                           attention_head_dim=8, num_attention_heads=2, joint_attention_dim=16,
                                           axes_dims_rope=(4, 2, 2), approximator_num_channels=16,
                                           approximator_hidden_dim=32, approximator_layers=1)
    vae = _vae()
    vae.register_to_config(scaling_factor=0.3611, shift_factor=0.1159)
    t5 = T5EncoderModel(T5Config(vocab_size=len(VOCAB), d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2,
                                 pad_token_id=0, eos_token_id=2)).eval()
    scheduler = FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                                                base_image_seq_len=256, max_image_seq_len=4096)
    pipe = TinyChromaPipeline(scheduler=scheduler, vae=vae, text_encoder=t5, tokenizer=build_tokenizer(),
                              transformer=transformer)
    return tiny_attributes(pipe, "chroma")


FLUX2_TEXT = 16
# Chat templates for the word-level tokenizer: the user's text only ([dev]: between the start and end tokens, as
# the pipeline tokenizes a rendered chat without adding them; [klein]: the tokenizer adds them). The stock
# templates wrap the prompt in tokens (and, for [dev], a system message) this vocabulary does not have.
FLUX2_DEV_TEMPLATE = ("{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}"
                      "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
                      "{% for c in message['content'] %}{% if c['type'] == 'text' %}{{ c['text'] }}{% endif %}"
                      "{% endfor %}{% endif %}{% endif %}{% endfor %}{{ eos_token }}")
FLUX2_KLEIN_TEMPLATE = ("{% for message in messages %}{% if message['role'] == 'user' %}{{ message['content'] }}"
                        "{% endif %}{% endfor %}")


def _flux2_parts(seed: int, guidance_embeds: bool):
    """A FLUX.2 transformer (one double, one single block) and its VAE, whose batch-norm statistics (the pipeline
    normalises the 2 x 2-patchified latents by them) are set to non-trivial values as a trained one's are."""
    from diffusers import AutoencoderKLFlux2, Flux2Transformer2DModel

    torch.manual_seed(seed)
    transformer = Flux2Transformer2DModel(patch_size=1, in_channels=16, num_layers=1, num_single_layers=1,
                                          attention_head_dim=8, num_attention_heads=2,
                                          joint_attention_dim=3 * FLUX2_TEXT, timestep_guidance_channels=256,
                                          mlp_ratio=3.0, axes_dims_rope=(2, 2, 2, 2), guidance_embeds=guidance_embeds)
    vae = AutoencoderKLFlux2(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                             up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 8), layers_per_block=1,
                             latent_channels=4, norm_num_groups=4, sample_size=16)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        vae.bn.running_mean.copy_(0.1 * torch.randn(vae.bn.num_features, generator=g))
        vae.bn.running_var.copy_(0.5 + torch.rand(vae.bn.num_features, generator=g))
    return transformer, vae.eval()


def _flux2_scheduler():
    from diffusers import FlowMatchEulerDiscreteScheduler

    return FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                                           base_image_seq_len=256, max_image_seq_len=4096, shift=3.0)


def tiny_flux2(seed: int = 0):
    """A random FLUX.2 [dev]-style pipeline: guidance as an embedding input, a tiny Mistral 3 encoder (its three
    read layers are the one layer it has). Flux2Pipeline with the tiny size's defaults: prompts of 8 tokens, 16 x 16
    images."""
    from diffusers import Flux2Pipeline
    from transformers import Mistral3Config, Mistral3ForConditionalGeneration

    TinyFlux2Pipeline = tiny_class(Flux2Pipeline, "flux2")
    transformer, vae = _flux2_parts(seed, guidance_embeds=True)
    text = dict(model_type="mistral", vocab_size=len(VOCAB), hidden_size=FLUX2_TEXT, intermediate_size=2 * FLUX2_TEXT,
                num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1, head_dim=8,
                max_position_embeddings=512, sliding_window=None, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    vision = dict(model_type="pixtral", hidden_size=FLUX2_TEXT, intermediate_size=2 * FLUX2_TEXT, num_hidden_layers=1,
                  num_attention_heads=2, head_dim=8, image_size=16, patch_size=8)
    mistral = Mistral3ForConditionalGeneration(Mistral3Config(text_config=text, vision_config=vision,
                                                              image_token_index=3, spatial_merge_size=1)).eval()
    tokenizer = build_tokenizer()
    tokenizer.chat_template = FLUX2_DEV_TEMPLATE
    pipe = TinyFlux2Pipeline(scheduler=_flux2_scheduler(), vae=vae, text_encoder=mistral, tokenizer=tokenizer,
                             transformer=transformer)
    return tiny_attributes(pipe, "flux2")


def tiny_flux2_klein(seed: int = 0, is_distilled: bool = False):
    """A random FLUX.2 [klein]-style pipeline, base (classifier-free guidance: a second call per step) or
    distilled (no guidance), with a tiny Qwen3 encoder. Flux2KleinPipeline with the tiny size's defaults."""
    from diffusers import Flux2KleinPipeline
    from transformers import Qwen3Config, Qwen3ForCausalLM

    TinyFlux2KleinPipeline = tiny_class(Flux2KleinPipeline, "flux2-klein")
    transformer, vae = _flux2_parts(seed, guidance_embeds=False)
    qwen3 = Qwen3ForCausalLM(Qwen3Config(vocab_size=len(VOCAB), hidden_size=FLUX2_TEXT, intermediate_size=2 * FLUX2_TEXT,
                                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1, head_dim=8,
                                         max_position_embeddings=512, pad_token_id=0, bos_token_id=1,
                                         eos_token_id=2)).eval()
    tokenizer = build_tokenizer()
    tokenizer.chat_template = FLUX2_KLEIN_TEMPLATE
    pipe = TinyFlux2KleinPipeline(scheduler=_flux2_scheduler(), vae=vae, text_encoder=qwen3, tokenizer=tokenizer,
                                  transformer=transformer, is_distilled=is_distilled)
    return tiny_attributes(pipe, "flux2-klein")


def tiny_zimage(seed: int = 0):
    """A random Z-Image-style pipeline: a single-stream DiT called on lists, a tiny Qwen3 encoder (two layers: the
    pipeline reads the one before last), 16 x 16 images (the stock call's default is 1024 x 1024), a chat template
    of the user's text alone (the word-level tokenizer has none of Qwen's chat tokens)."""
    from diffusers import FlowMatchEulerDiscreteScheduler, ZImagePipeline, ZImageTransformer2DModel
    from transformers import Qwen3Config, Qwen3Model

    TinyZImagePipeline = tiny_class(ZImagePipeline, "zimage")

    torch.manual_seed(seed)
    transformer = ZImageTransformer2DModel(all_patch_size=(2,), all_f_patch_size=(1,), in_channels=4, dim=16,
                                           n_layers=2, n_refiner_layers=1, n_heads=2, n_kv_heads=2, qk_norm=True,
                                           cap_feat_dim=16, rope_theta=256.0, t_scale=1000.0, axes_dims=[4, 2, 2],
                                           axes_lens=[1024, 64, 64])
    with torch.no_grad():  # zeros at init; a trained model's pad tokens are not
        transformer.x_pad_token.normal_(std=0.02)
        transformer.cap_pad_token.normal_(std=0.02)
    vae = _vae()
    vae.register_to_config(scaling_factor=0.3611, shift_factor=0.1159)
    qwen3 = Qwen3Model(Qwen3Config(vocab_size=len(VOCAB), hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                   num_attention_heads=2, num_key_value_heads=1, head_dim=8, max_position_embeddings=64,
                                   pad_token_id=0, bos_token_id=1, eos_token_id=2)).eval()
    tokenizer = build_tokenizer()
    tokenizer.chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    pipe = TinyZImagePipeline(scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0), vae=vae, text_encoder=qwen3,
                              tokenizer=tokenizer, transformer=transformer)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def tiny_lumina2(seed: int = 0):
    """A random Lumina-Image-2.0-style pipeline, the stock class unchanged: a single-stream DiT with grouped-query
    attention, a tiny Gemma 2 encoder (two layers: the pipeline reads the one before last), a VAE with the 8x
    downsampling the pipeline assumes, 64 x 64 images (4 x 4 image tokens)."""
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, Lumina2Pipeline, Lumina2Transformer2DModel
    from transformers import Gemma2Config, Gemma2Model

    torch.manual_seed(seed)
    transformer = Lumina2Transformer2DModel(sample_size=8, patch_size=2, in_channels=4, hidden_size=16, num_layers=2,
                                            num_refiner_layers=1, num_attention_heads=2, num_kv_heads=1,
                                            multiple_of=16, axes_dim_rope=(4, 2, 2), axes_lens=(300, 512, 512),
                                            cap_feat_dim=16)
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, sample_size=64,
                        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                        block_out_channels=(8, 8, 8, 8), layers_per_block=1, norm_num_groups=4,
                        scaling_factor=0.3611, shift_factor=0.1159)
    gemma = Gemma2Model(Gemma2Config(vocab_size=len(VOCAB), hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                     num_attention_heads=2, num_key_value_heads=1, head_dim=8,
                                     max_position_embeddings=512, pad_token_id=0)).eval()
    pipe = Lumina2Pipeline(transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(), vae=vae,
                           text_encoder=gemma, tokenizer=build_tokenizer())
    pipe.set_progress_bar_config(disable=True)
    return pipe


def tiny_cogview4(seed: int = 0):
    """A random CogView4-style pipeline, the stock class unchanged: a DiT whose blocks share their weights between
    image and text tokens, a tiny GLM encoder (two layers: the pipeline reads the one before last), CogView4's
    scheduler settings, 16 x 16 images."""
    from diffusers import CogView4Pipeline, CogView4Transformer2DModel, FlowMatchEulerDiscreteScheduler
    from transformers import GlmConfig, GlmModel

    torch.manual_seed(seed)
    transformer = CogView4Transformer2DModel(patch_size=2, in_channels=4, out_channels=4, num_layers=2,
                                             attention_head_dim=8, num_attention_heads=2, text_embed_dim=16,
                                             time_embed_dim=16, condition_dim=4, sample_size=8)
    glm = GlmModel(GlmConfig(vocab_size=len(VOCAB), hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                             num_attention_heads=2, num_key_value_heads=1, head_dim=8, max_position_embeddings=64,
                             pad_token_id=0, bos_token_id=1, eos_token_id=2)).eval()
    scheduler = FlowMatchEulerDiscreteScheduler(base_shift=0.25, max_shift=0.75, base_image_seq_len=256,
                                                max_image_seq_len=4096, use_dynamic_shifting=True,
                                                time_shift_type="linear")
    pipe = CogView4Pipeline(tokenizer=build_tokenizer(), text_encoder=glm, vae=_vae(), transformer=transformer,
                            scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def tiny_hunyuanimage(seed: int = 0):
    """A random HunyuanImage-2.1-style pipeline: an MMDiT (one double, one single block) with a text refiner, a tiny
    Qwen2.5-VL (three layers: the pipeline reads the third from last) and T5 for the glyph stream, guided by its
    adaptive projected guiders, 16 x 16 images. On the instance: no chat template (the word-level tokenizer has
    none of its tokens, so only the start token is dropped), prompts of 8 tokens (stock 1000 and 128)."""
    from diffusers import (AdaptiveProjectedMixGuidance, AutoencoderKLHunyuanImage, FlowMatchEulerDiscreteScheduler,
                           HunyuanImagePipeline, HunyuanImageTransformer2DModel)
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(seed)
    transformer = HunyuanImageTransformer2DModel(in_channels=4, out_channels=4, num_attention_heads=2,
                                                 attention_head_dim=8, num_layers=1, num_single_layers=1,
                                                 num_refiner_layers=1, patch_size=(2, 2), guidance_embeds=False,
                                                 text_embed_dim=16, text_embed_2_dim=16, rope_axes_dim=(4, 4))
    vae = AutoencoderKLHunyuanImage(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(32, 32),
                                    layers_per_block=1, spatial_compression_ratio=2, sample_size=16,
                                    scaling_factor=0.476986)
    qwen = _qwen_vl_text(layers=3)
    t5 = T5EncoderModel(T5Config(vocab_size=len(VOCAB), d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2,
                                 pad_token_id=0, eos_token_id=2)).eval()
    pipe = HunyuanImagePipeline(scheduler=FlowMatchEulerDiscreteScheduler(shift=5.0), vae=vae, text_encoder=qwen,
                                tokenizer=build_tokenizer(), text_encoder_2=t5, tokenizer_2=build_tokenizer(),
                                transformer=transformer, guider=AdaptiveProjectedMixGuidance(),
                                ocr_guider=AdaptiveProjectedMixGuidance())
    return tiny_attributes(pipe, "hunyuanimage")


def tiny_hidream(seed: int = 0):
    """A random HiDream-I1-style pipeline: one double- and one single-stream block with mixture-of-experts image
    feed-forwards, two CLIPs (128 positions: the pipeline pads them so), T5 and a two-layer Llama, 16 x 16 images
    (the pipeline rescales any size to the area its default sample size gives)."""
    from diffusers import (FlowMatchEulerDiscreteScheduler, HiDreamImagePipeline,
                           HiDreamImageTransformer2DModel)
    from transformers import (CLIPTextConfig, CLIPTextModelWithProjection, LlamaConfig, LlamaForCausalLM, T5Config,
                              T5EncoderModel)

    torch.manual_seed(seed)
    transformer = HiDreamImageTransformer2DModel(patch_size=2, in_channels=4, out_channels=4, num_layers=1,
                                                 num_single_layers=1, attention_head_dim=8, num_attention_heads=2,
                                                 caption_channels=[16, 16], text_emb_dim=32, num_routed_experts=4,
                                                 num_activated_experts=2, axes_dims_rope=(4, 2, 2),
                                                 max_resolution=(8, 8), llama_layers=(0, 1)).eval()
    vae = _vae()
    vae.register_to_config(scaling_factor=0.3611, shift_factor=0.1159)

    def clip():
        return CLIPTextModelWithProjection(CLIPTextConfig(
            vocab_size=len(VOCAB), hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
            max_position_embeddings=128, projection_dim=16, pad_token_id=0, bos_token_id=1, eos_token_id=2)).eval()

    t5 = T5EncoderModel(T5Config(vocab_size=len(VOCAB), d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2,
                                 pad_token_id=0, eos_token_id=2)).eval()
    llama = LlamaForCausalLM(LlamaConfig(vocab_size=len(VOCAB), hidden_size=16, intermediate_size=32,
                                         num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                                         head_dim=8, max_position_embeddings=64, pad_token_id=0, bos_token_id=1,
                                         eos_token_id=2, attn_implementation="eager")).eval()
    pipe = HiDreamImagePipeline(scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0), vae=vae,
                                text_encoder=clip(), tokenizer=build_tokenizer(),
                                text_encoder_2=clip(), tokenizer_2=build_tokenizer(),
                                text_encoder_3=t5, tokenizer_3=build_tokenizer(),
                                text_encoder_4=llama, tokenizer_4=build_tokenizer(), transformer=transformer)
    return tiny_attributes(pipe, "hidream")


def tiny_cogview3(seed: int = 0):
    """A random CogView3-Plus-style pipeline, a family cadiff has no adapter for (the generic path's test model): a
    DiT with a doubled guided batch on a v-prediction DDIM schedule, a tiny T5, 16 x 16 images."""
    from diffusers import CogVideoXDDIMScheduler, CogView3PlusPipeline, CogView3PlusTransformer2DModel
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(seed)
    transformer = CogView3PlusTransformer2DModel(patch_size=2, in_channels=4, num_layers=2, attention_head_dim=8,
                                                 num_attention_heads=2, out_channels=4, text_embed_dim=16,
                                                 time_embed_dim=8, condition_dim=2, pos_embed_max_size=8,
                                                 sample_size=8)
    t5 = T5EncoderModel(T5Config(vocab_size=len(VOCAB), d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2,
                                 pad_token_id=0, eos_token_id=2)).eval()
    pipe = CogView3PlusPipeline(tokenizer=build_tokenizer(), text_encoder=t5, vae=_vae(), transformer=transformer,
                                scheduler=CogVideoXDDIMScheduler(prediction_type="v_prediction"))
    pipe.set_progress_bar_config(disable=True)
    return pipe


FAMILIES = {"sd3": tiny_sd3, "pixart": tiny_pixart, "flux": tiny_flux, "sana": tiny_sana,
            "flux-cfg": lambda seed=0: tiny_flux(seed, guidance_embeds=False), "qwenimage": tiny_qwenimage,
            "chroma": tiny_chroma, "flux2": tiny_flux2, "flux2-klein": tiny_flux2_klein,
            "flux2-klein-distilled": lambda seed=0: tiny_flux2_klein(seed, is_distilled=True), "zimage": tiny_zimage,
            "lumina2": tiny_lumina2, "cogview4": tiny_cogview4,
            "hunyuanimage": tiny_hunyuanimage, "hidream": tiny_hidream}


def tiny_sd(kind: str = "sd1", seed: int = 0, dtype: torch.dtype = torch.float32):
    """A random pipeline: 'sd1' (SD 1.x layout), 'sd2' (v-prediction, linear projections, per-block heads), 'sdxl',
    'sd3' (an MMDiT with flow matching), 'pixart' (a DiT on a DDPM schedule), 'flux' (packed tokens, distilled
    guidance)."""
    if kind in FAMILIES:
        pipe = FAMILIES[kind](seed)
        return pipe if dtype == torch.float32 else pipe.to(dtype=dtype)
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline, UNet2DConditionModel

    torch.manual_seed(seed)
    common = dict(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(8, 16),
                  norm_num_groups=4)
    if kind == "sd1":
        unet = UNet2DConditionModel(**common, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=16,
                                    attention_head_dim=4)
        pipe = StableDiffusionPipeline(vae=_vae(), text_encoder=_text(16), tokenizer=build_tokenizer(), unet=unet,
                                       scheduler=_ddim(), safety_checker=None, feature_extractor=None,
                                       requires_safety_checker=False)
    elif kind == "sd2":
        unet = UNet2DConditionModel(**common, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=16,
                                    attention_head_dim=(2, 4), use_linear_projection=True)
        pipe = StableDiffusionPipeline(vae=_vae(), text_encoder=_text(16, act="gelu"), tokenizer=build_tokenizer(),
                                       unet=unet, scheduler=_ddim("v_prediction"), safety_checker=None, feature_extractor=None,
                                       requires_safety_checker=False)
    elif kind == "sdxl":  # the second text encoder wider and 10 layers deep, as SDXL's (diffusers tells them apart so)
        unet = UNet2DConditionModel(**common, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                    up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=16 + 24,
                                    attention_head_dim=(2, 4), use_linear_projection=True,
                                    transformer_layers_per_block=(1, 2), addition_embed_type="text_time",
                                    addition_time_embed_dim=4, projection_class_embeddings_input_dim=6 * 4 + 24)
        pipe = StableDiffusionXLPipeline(vae=_vae(), text_encoder=_text(16), text_encoder_2=_text(24, True, layers=10),
                                         tokenizer=build_tokenizer(), tokenizer_2=build_tokenizer(), unet=unet,
                                         scheduler=_ddim(), force_zeros_for_empty_prompt=False)
    else:
        raise ValueError(kind)
    pipe.set_progress_bar_config(disable=True)
    return pipe if dtype == torch.float32 else pipe.to(dtype=dtype)
