"""The original single-file layouts of the denoiser families that have one, as the tools outside diffusers read them
(A1111, ComfyUI, Forge): the inverse of diffusers' own converters, so diffusers' `from_single_file` reads a file
written here back to the same weights.

- U-Nets (SD 1.x, SD 2.x, SDXL): the LDM / CompVis layout, the inverse of `convert_ldm_unet_checkpoint` (the
  denoiser under `model.diffusion_model.`), `convert_ldm_vae_checkpoint` (`first_stage_model.`),
  `convert_ldm_clip_checkpoint` (SD 1.x: `cond_stage_model.transformer.`), `convert_open_clip_checkpoint` (SD 2.x:
  `cond_stage_model.model.`, OpenCLIP's names, told by its GELU) and, for SDXL, `conditioner.embedders.0/1.` with the
  second text encoder in OpenCLIP's names: a whole checkpoint.
- SD3: Stability AI's MMDiT names under `model.diffusion_model.` (`convert_sd3_transformer_checkpoint_to_diffusers`).
- Flux.1: Black Forest Labs' names at the top level, as flux1-dev.safetensors is published
  (`convert_flux_transformer_checkpoint_to_diffusers`); dev files carry `guidance_in.*`, schnell files do not.
- Flux.2 (`convert_flux2_transformer_checkpoint_to_diffusers`, Black Forest Labs' names), Chroma (Flux.1's block
  names), Z-Image and Lumina 2 (NextDiT names, q, k, v fused): at the top level. The unused `norm_final.weight` of
  Z-Image's and Lumina 2's original files, which diffusers drops, is not written.
- Qwen-Image (no prefix) and HiDream (under `model.diffusion_model.`): diffusers' own names, as published.
Files of the transformer families hold the denoiser alone (the other components come from the model's folder).

Every key is renamed by its longest matching module prefix, built from the model's own block structure; a key no
prefix covers raises, so nothing is dropped silently. A renaming takes any state dict keyed like the denoiser's (its
weights, or a difference of weights: patches are renamed by the same tables).

Example:
    >>> state = original_checkpoint(pipe)          # the whole SD 1.x checkpoint, LDM keys   # doctest: +SKIP
    >>> LAYOUTS["flux"].rename(pipe.transformer, {"proj_out.weight": w})   # {"final_layer.linear.weight": w}  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

UNET_RESNET = {"norm1.": "in_layers.0.", "conv1.": "in_layers.2.", "norm2.": "out_layers.0.", "conv2.": "out_layers.3.",
               "time_emb_proj.": "emb_layers.1.", "conv_shortcut.": "skip_connection."}
VAE_RESNET = {"conv_shortcut.": "nin_shortcut."}
VAE_ATTENTION = {"group_norm.": "norm.", "to_q.": "q.", "to_k.": "k.", "to_v.": "v.", "to_out.0.": "proj_out."}
OPEN_CLIP_LAYER = {"layer_norm1.": "ln_1.", "layer_norm2.": "ln_2.", "mlp.fc1.": "mlp.c_fc.", "mlp.fc2.": "mlp.c_proj.",
                   "self_attn.out_proj.": "attn.out_proj.", "self_attn.in_proj_": "attn.in_proj_"}


def _unet_prefixes(unet) -> dict[str, tuple[str, dict]]:
    """diffusers module prefix -> (LDM prefix, renames inside that module)."""
    p = {"conv_in.": ("input_blocks.0.0.", {}), "time_embedding.linear_1.": ("time_embed.0.", {}),
         "time_embedding.linear_2.": ("time_embed.2.", {}), "conv_norm_out.": ("out.0.", {}),
         "conv_out.": ("out.2.", {}), "mid_block.resnets.0.": ("middle_block.0.", UNET_RESNET),
         "mid_block.attentions.0.": ("middle_block.1.", {}), "mid_block.resnets.1.": ("middle_block.2.", UNET_RESNET),
         "add_embedding.linear_1.": ("label_emb.0.0.", {}), "add_embedding.linear_2.": ("label_emb.0.2.", {})}  # SDXL
    i = 1  # input_blocks.0 is conv_in; each resnet (+ its attention) and each downsampler is one input block
    for b, block in enumerate(unet.down_blocks):
        for j in range(len(block.resnets)):
            p[f"down_blocks.{b}.resnets.{j}."] = (f"input_blocks.{i}.0.", UNET_RESNET)
            p[f"down_blocks.{b}.attentions.{j}."] = (f"input_blocks.{i}.1.", {})
            i += 1
        if block.downsamplers is not None:
            p[f"down_blocks.{b}.downsamplers.0.conv."] = (f"input_blocks.{i}.0.op.", {})
            i += 1
    i = 0  # the upsampler shares the output block of the up block's last resnet, after its attention if any
    for b, block in enumerate(unet.up_blocks):
        for j in range(len(block.resnets)):
            p[f"up_blocks.{b}.resnets.{j}."] = (f"output_blocks.{i}.0.", UNET_RESNET)
            p[f"up_blocks.{b}.attentions.{j}."] = (f"output_blocks.{i}.1.", {})
            i += 1
        if block.upsamplers is not None:
            p[f"up_blocks.{b}.upsamplers.0."] = (f"output_blocks.{i - 1}.{2 if hasattr(block, 'attentions') else 1}.", {})
    return p


def _vae_prefixes(vae) -> dict[str, tuple[str, dict]]:
    p = {"quant_conv.": ("quant_conv.", {}), "post_quant_conv.": ("post_quant_conv.", {})}
    for part in ("encoder", "decoder"):
        p.update({f"{part}.conv_in.": (f"{part}.conv_in.", {}), f"{part}.conv_out.": (f"{part}.conv_out.", {}),
                  f"{part}.conv_norm_out.": (f"{part}.norm_out.", {}),
                  f"{part}.mid_block.resnets.0.": (f"{part}.mid.block_1.", VAE_RESNET),
                  f"{part}.mid_block.resnets.1.": (f"{part}.mid.block_2.", VAE_RESNET),
                  f"{part}.mid_block.attentions.0.": (f"{part}.mid.attn_1.", VAE_ATTENTION)})
    for b, block in enumerate(vae.encoder.down_blocks):
        for j in range(len(block.resnets)):
            p[f"encoder.down_blocks.{b}.resnets.{j}."] = (f"encoder.down.{b}.block.{j}.", VAE_RESNET)
        p[f"encoder.down_blocks.{b}.downsamplers.0."] = (f"encoder.down.{b}.downsample.", {})
    n = len(vae.decoder.up_blocks)  # LDM numbers decoder levels from the lowest resolution up: reversed
    for b, block in enumerate(vae.decoder.up_blocks):
        for j in range(len(block.resnets)):
            p[f"decoder.up_blocks.{b}.resnets.{j}."] = (f"decoder.up.{n - 1 - b}.block.{j}.", VAE_RESNET)
        p[f"decoder.up_blocks.{b}.upsamplers.0."] = (f"decoder.up.{n - 1 - b}.upsample.", {})
    return p


def _open_clip_prefixes(te) -> dict[str, tuple[str, dict]]:
    """transformers' CLIP -> OpenCLIP, as SDXL's second text encoder and SD 2.x's encoder are stored."""
    p = {"text_model.embeddings.token_embedding.": ("token_embedding.", {}),
         "text_model.embeddings.position_embedding.weight": ("positional_embedding", {}),
         "text_model.final_layer_norm.": ("ln_final.", {}), "text_projection.weight": ("text_projection", {})}
    for n in range(te.config.num_hidden_layers):
        p[f"text_model.encoder.layers.{n}."] = (f"transformer.resblocks.{n}.", OPEN_CLIP_LAYER)
    return p


def _open_clip_state(te) -> dict[str, torch.Tensor]:
    """OpenCLIP keeps q, k, v concatenated as one `in_proj`, and the projection as a (width, dim) matrix: x @ it.
    (Keys as CLIPTextModelWithProjection's, under `text_model.`, which transformers >= 5.6 drops from CLIPTextModel.)"""
    inner = "" if hasattr(te, "text_model") else "text_model."
    state = {(k if k.startswith("text_projection.") else inner + k): v for k, v in te.state_dict().items()}
    for key in [k for k in state if ".self_attn.q_proj." in k]:
        qkv = [state.pop(key.replace("q_proj", f"{x}_proj")) for x in "qkv"]
        state[key.replace("q_proj.", "in_proj_")] = torch.cat(qkv)
    if "text_projection.weight" in state:  # (SD 2.x's encoder has none)
        state["text_projection.weight"] = state["text_projection.weight"].T
    return state


def _block_prefixes(transformer, top: dict[str, str], blocks: dict[str, tuple[str, dict[str, str]]]
                    ) -> dict[str, tuple[str, dict]]:
    """Prefixes of the top-level modules `top` ({diffusers: original}) and of every block of each diffusers block
    list: {diffusers list: (original list, {module in a block: original module})}."""
    p = {old: (new, {}) for old, new in top.items()}
    for listed, (original, table) in blocks.items():
        for n in range(len(getattr(transformer, listed))):
            p.update({f"{listed}.{n}.{old}": (f"{original}.{n}.{new}", {}) for old, new in table.items()})
    return p


def _rename(state: dict[str, torch.Tensor], prefixes: dict, out_prefix: str) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        old = max((p for p in prefixes if key.startswith(p)), key=len, default=None)
        if old is None:
            raise KeyError(f"no LDM name for '{key}'")
        new, inner = prefixes[old]
        rest = key[len(old):]
        for a, b in inner.items():
            if rest.startswith(a):
                rest = b + rest[len(a):]
        out[out_prefix + new + rest] = value
    return out


# --- SD3 -------------------------------------------------------------------------------------------------------------
# The inverse of diffusers' `convert_sd3_transformer_checkpoint_to_diffusers`: the MMDiT under `model.diffusion_model.`,
# the VAE under `first_stage_model.` (as for SD 1.x / SDXL), the two CLIPs under `text_encoders.clip_l.transformer.` and
# `text_encoders.clip_g.transformer.` in transformers' own key names (what `is_clip_sd3_model` and
# `is_open_clip_sd3_model` look for). No T5 keys are written: the tiny pipelines have no third text encoder.

SD3_BLOCK = {  # diffusers module inside transformer_blocks.N. -> original module inside joint_blocks.N.
    "attn.qkv.": "x_block.attn.qkv.", "attn.add_qkv.": "context_block.attn.qkv.",
    "attn.norm_q.": "x_block.attn.ln_q.", "attn.norm_k.": "x_block.attn.ln_k.",
    "attn.norm_added_q.": "context_block.attn.ln_q.", "attn.norm_added_k.": "context_block.attn.ln_k.",
    "attn.to_out.0.": "x_block.attn.proj.", "attn.to_add_out.": "context_block.attn.proj.",
    "attn2.qkv.": "x_block.attn2.qkv.", "attn2.norm_q.": "x_block.attn2.ln_q.", "attn2.norm_k.": "x_block.attn2.ln_k.",
    "attn2.to_out.0.": "x_block.attn2.proj.",
    "norm1.linear.": "x_block.adaLN_modulation.1.", "norm1_context.linear.": "context_block.adaLN_modulation.1.",
    "ff.net.0.proj.": "x_block.mlp.fc1.", "ff.net.2.": "x_block.mlp.fc2.",
    "ff_context.net.0.proj.": "context_block.mlp.fc1.", "ff_context.net.2.": "context_block.mlp.fc2.",
}
SD3_QKV = {"attn.": ("to_q", "to_k", "to_v", "qkv"), "attn.add_": ("q_proj", "k_proj", "v_proj", "qkv"),
           "attn2.": ("to_q", "to_k", "to_v", "qkv")}  # fused as cat([q, k, v]) along the output dimension


def _sd3_prefixes(transformer) -> dict[str, tuple[str, dict]]:
    p = {"pos_embed.pos_embed": ("pos_embed", {}), "pos_embed.proj.": ("x_embedder.proj.", {}),
         "time_text_embed.timestep_embedder.linear_1.": ("t_embedder.mlp.0.", {}),
         "time_text_embed.timestep_embedder.linear_2.": ("t_embedder.mlp.2.", {}),
         "time_text_embed.text_embedder.linear_1.": ("y_embedder.mlp.0.", {}),
         "time_text_embed.text_embedder.linear_2.": ("y_embedder.mlp.2.", {}),
         "context_embedder.": ("context_embedder.", {}), "proj_out.": ("final_layer.linear.", {}),
         "norm_out.linear.": ("final_layer.adaLN_modulation.1.", {})}
    for n in range(len(transformer.transformer_blocks)):
        for old, new in SD3_BLOCK.items():
            p[f"transformer_blocks.{n}.{old}"] = (f"joint_blocks.{n}.{new}", {})
    return p


def free_zeros(like: torch.Tensor) -> torch.Tensor:
    """Zeros shaped as `like` that take no memory (an expanded scalar): how a difference gives a weight the edit left
    alone, so that renaming it costs nothing."""
    return torch.zeros((), dtype=like.dtype).expand(like.shape)


def is_free_zeros(t: torch.Tensor) -> bool:
    return t.numel() > 0 and all(s == 0 for s in t.stride())


def _cat(parts: list[torch.Tensor]) -> torch.Tensor:
    """torch.cat along the first dimension; parts that are all `free_zeros` stay free zeros (a fused weight none of
    whose parts an edit changed takes no memory either)."""
    if all(is_free_zeros(p) for p in parts):
        return torch.zeros((), dtype=parts[0].dtype).expand(sum(p.shape[0] for p in parts), *parts[0].shape[1:])
    return torch.cat(parts)


def _swap_halves(t: torch.Tensor) -> torch.Tensor:
    """diffusers' `swap_scale_shift` (its own inverse): the original stores (shift, scale), diffusers (scale, shift)."""
    a, b = t.chunk(2, dim=0)
    return _cat([b, a])


def _sd3_state(transformer, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    state = dict(state)
    last = len(transformer.transformer_blocks) - 1
    for n in range(last + 1):
        for module, (q, k, v, fused) in SD3_QKV.items():
            base = f"transformer_blocks.{n}.{module}"
            _fuse(state, base, (q, k, v), fused)
    # diffusers swaps scale/shift in the final norm and in the last block's (pre-only) context norm
    return _scale_shift_swapped(state, (f"transformer_blocks.{last}.norm1_context.linear", "norm_out.linear"))


def _ldm_vae_state(vae) -> dict[str, torch.Tensor]:
    state = _rename(vae.state_dict(), _vae_prefixes(vae), "first_stage_model.")
    for key, value in state.items():  # LDM's VAE mid attention is 1x1 convs: q, k, v, proj_out weights are 4-D
        if ".mid.attn_1." in key and key.endswith("weight") and value.ndim == 2:
            state[key] = value[:, :, None, None]
    return state


# --- Flux ------------------------------------------------------------------------------------------------------------
# The inverse of diffusers' `convert_flux_transformer_checkpoint_to_diffusers`: the transformer alone, in Black Forest
# Labs' key names at the top level (as flux1-dev.safetensors is published; the VAE and text encoders come from the
# config folder). Dev files carry `guidance_in.*`, schnell files do not.

FLUX_TOP = {"time_text_embed.timestep_embedder.linear_1.": "time_in.in_layer.",
            "time_text_embed.timestep_embedder.linear_2.": "time_in.out_layer.",
            "time_text_embed.text_embedder.linear_1.": "vector_in.in_layer.",
            "time_text_embed.text_embedder.linear_2.": "vector_in.out_layer.",
            "time_text_embed.guidance_embedder.linear_1.": "guidance_in.in_layer.",
            "time_text_embed.guidance_embedder.linear_2.": "guidance_in.out_layer.",
            "context_embedder.": "txt_in.", "x_embedder.": "img_in.", "proj_out.": "final_layer.linear.",
            "norm_out.linear.": "final_layer.adaLN_modulation.1."}
FLUX_DOUBLE = {  # diffusers module inside transformer_blocks.N. -> original module inside double_blocks.N.
    "norm1.linear.": "img_mod.lin.", "norm1_context.linear.": "txt_mod.lin.",
    "attn.qkv.": "img_attn.qkv.", "attn.add_qkv.": "txt_attn.qkv.",
    "attn.norm_q.weight": "img_attn.norm.query_norm.scale", "attn.norm_k.weight": "img_attn.norm.key_norm.scale",
    "attn.norm_added_q.weight": "txt_attn.norm.query_norm.scale",
    "attn.norm_added_k.weight": "txt_attn.norm.key_norm.scale",
    "ff.net.0.proj.": "img_mlp.0.", "ff.net.2.": "img_mlp.2.",
    "ff_context.net.0.proj.": "txt_mlp.0.", "ff_context.net.2.": "txt_mlp.2.",
    "attn.to_out.0.": "img_attn.proj.", "attn.to_add_out.": "txt_attn.proj.",
}
FLUX_SINGLE = {  # diffusers module inside single_transformer_blocks.N. -> original module inside single_blocks.N.
    "norm.linear.": "modulation.lin.", "linear1.": "linear1.", "proj_out.": "linear2.",
    "attn.norm_q.weight": "norm.query_norm.scale", "attn.norm_k.weight": "norm.key_norm.scale",
}
FLUX_FUSED = {  # fused as cat(parts) along the output dimension, in this order
    "transformer_blocks": {"attn.qkv": ("attn.to_q", "attn.to_k", "attn.to_v"),
                           "attn.add_qkv": ("attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj")},
    "single_transformer_blocks": {"linear1": ("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp")},
}


FLUX_BLOCKS = {"transformer_blocks": ("double_blocks", FLUX_DOUBLE),
               "single_transformer_blocks": ("single_blocks", FLUX_SINGLE)}


def _fuse(state: dict[str, torch.Tensor], base: str, parts: tuple[str, ...], fused: str) -> None:
    """Replaces `base + part + .weight/.bias` of each part by `base + fused + .weight/.bias`: cat(parts) along the
    output dimension, in this order (what the original stores and diffusers' converters split)."""
    for param in ("weight", "bias"):
        if f"{base}{parts[0]}.{param}" in state:
            state[f"{base}{fused}.{param}"] = _cat([state.pop(f"{base}{x}.{param}") for x in parts])


def _flux_fused(transformer, state: dict[str, torch.Tensor], blocks: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """`state` with q, k, v (and a single block's MLP input) fused as Flux.1 fuses them, in the block lists
    `blocks`."""
    state = dict(state)
    for listed in blocks:
        for n in range(len(getattr(transformer, listed))):
            for name, parts in FLUX_FUSED[listed].items():
                _fuse(state, f"{listed}.{n}.", parts, name)
    return state


def _scale_shift_swapped(state: dict[str, torch.Tensor], modules: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """`state` with the weight and bias of each of `modules` in the original's (shift, scale) order; diffusers keeps
    (scale, shift)."""
    for module in modules:
        for param in ("weight", "bias"):
            if f"{module}.{param}" in state:
                state[f"{module}.{param}"] = _swap_halves(state[f"{module}.{param}"])
    return state


# --- Flux.2 ----------------------------------------------------------------------------------------------------------
# Black Forest Labs' names at the top level, as flux2-dev.safetensors is published: diffusers' converter does not strip
# `model.diffusion_model.` (it reads the block number as the key's second field). Klein files carry no `guidance_in.*`.
# The single blocks are fused in diffusers too (`to_qkv_mlp_proj`); the double blocks' q, k, v are split by chunk(3).

FLUX2_TOP = {"time_guidance_embed.timestep_embedder.linear_1.": "time_in.in_layer.",
             "time_guidance_embed.timestep_embedder.linear_2.": "time_in.out_layer.",
             "time_guidance_embed.guidance_embedder.linear_1.": "guidance_in.in_layer.",
             "time_guidance_embed.guidance_embedder.linear_2.": "guidance_in.out_layer.",
             "double_stream_modulation_img.linear.": "double_stream_modulation_img.lin.",
             "double_stream_modulation_txt.linear.": "double_stream_modulation_txt.lin.",
             "single_stream_modulation.linear.": "single_stream_modulation.lin.",
             "x_embedder.": "img_in.", "context_embedder.": "txt_in.", "proj_out.": "final_layer.linear.",
             "norm_out.linear.": "final_layer.adaLN_modulation.1."}
FLUX2_DOUBLE = {  # diffusers module inside transformer_blocks.N. -> original module inside double_blocks.N.
    "attn.qkv.": "img_attn.qkv.", "attn.add_qkv.": "txt_attn.qkv.",
    "attn.norm_q.weight": "img_attn.norm.query_norm.scale", "attn.norm_k.weight": "img_attn.norm.key_norm.scale",
    "attn.norm_added_q.weight": "txt_attn.norm.query_norm.scale",
    "attn.norm_added_k.weight": "txt_attn.norm.key_norm.scale",
    "attn.to_out.0.": "img_attn.proj.", "attn.to_add_out.": "txt_attn.proj.",
    "ff.linear_in.": "img_mlp.0.", "ff.linear_out.": "img_mlp.2.",
    "ff_context.linear_in.": "txt_mlp.0.", "ff_context.linear_out.": "txt_mlp.2.",
}
FLUX2_SINGLE = {  # diffusers module inside single_transformer_blocks.N. -> original module inside single_blocks.N.
    "attn.to_qkv_mlp_proj.": "linear1.", "attn.to_out.": "linear2.",
    "attn.norm_q.weight": "norm.query_norm.scale", "attn.norm_k.weight": "norm.key_norm.scale",
}


FLUX2_BLOCKS = {"transformer_blocks": ("double_blocks", FLUX2_DOUBLE),
                "single_transformer_blocks": ("single_blocks", FLUX2_SINGLE)}


# --- Chroma ----------------------------------------------------------------------------------------------------------
# Flux.1's block names (lodestones' files, top level; diffusers also strips `model.diffusion_model.`), no modulation
# in the blocks or the final layer (all of it comes from the `distilled_guidance_layer` approximator), so no swap.

CHROMA_TOP = {"distilled_guidance_layer.in_proj.": "distilled_guidance_layer.in_proj.",
              "distilled_guidance_layer.out_proj.": "distilled_guidance_layer.out_proj.",
              "context_embedder.": "txt_in.", "x_embedder.": "img_in.", "proj_out.": "final_layer.linear."}
CHROMA_APPROXIMATOR = {"linear_1.": "in_layer.", "linear_2.": "out_layer."}  # inside distilled_guidance_layer.layers.N.


def _chroma_prefixes(transformer) -> dict[str, tuple[str, dict]]:
    p = {old: (new, {}) for old, new in CHROMA_TOP.items()}
    for n in range(len(transformer.distilled_guidance_layer.layers)):
        for old, new in CHROMA_APPROXIMATOR.items():
            p[f"distilled_guidance_layer.layers.{n}.{old}"] = (f"distilled_guidance_layer.layers.{n}.{new}", {})
        p[f"distilled_guidance_layer.norms.{n}.weight"] = (f"distilled_guidance_layer.norms.{n}.scale", {})
    return {**p, **_block_prefixes(transformer, {}, FLUX_BLOCKS)}  # (Flux.1's modulation entries go unused)


# --- Z-Image ---------------------------------------------------------------------------------------------------------
# ComfyUI's NextDiT names (top level; diffusers also strips `model.diffusion_model.`): q, k, v fused, `x_embedder`
# and `final_layer` for diffusers' only patch pair "2-1" (the converter knows no other). The original's unused
# `norm_final.weight`, which the converter drops, is not written.

ZIMAGE_TOP = {"x_pad_token": "x_pad_token", "cap_pad_token": "cap_pad_token", "t_embedder.": "t_embedder.",
              "cap_embedder.": "cap_embedder.", "all_x_embedder.2-1.": "x_embedder.",
              "all_final_layer.2-1.": "final_layer."}
ZIMAGE_BLOCK = {  # the same inside layers.N., noise_refiner.N., context_refiner.N.
    "attention.qkv.": "attention.qkv.", "attention.to_out.0.": "attention.out.",
    "attention.norm_q.": "attention.q_norm.", "attention.norm_k.": "attention.k_norm.",
    "feed_forward.w1.": "feed_forward.w1.", "feed_forward.w2.": "feed_forward.w2.",
    "feed_forward.w3.": "feed_forward.w3.", "attention_norm1.": "attention_norm1.", "ffn_norm1.": "ffn_norm1.",
    "attention_norm2.": "attention_norm2.", "ffn_norm2.": "ffn_norm2.", "adaLN_modulation.0.": "adaLN_modulation.0.",
}
ZIMAGE_BLOCKS = ("layers", "noise_refiner", "context_refiner")


def _zimage_prefixes(transformer) -> dict[str, tuple[str, dict]]:
    return _block_prefixes(transformer, ZIMAGE_TOP, {blocks: (blocks, ZIMAGE_BLOCK) for blocks in ZIMAGE_BLOCKS})


def _zimage_state(transformer, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    state = dict(state)
    for blocks in ZIMAGE_BLOCKS:
        for n in range(len(getattr(transformer, blocks))):
            _fuse(state, f"{blocks}.{n}.attention.", ("to_q", "to_k", "to_v"), "qkv")
    return state


# --- Lumina 2 --------------------------------------------------------------------------------------------------------
# Alpha-VLLM's NextDiT names (top level, as consolidated.00-of-01.pth; diffusers also strips `model.diffusion_model.`,
# as ComfyUI's files have it): q, k, v fused (grouped-query: q is wider than k and v). The unused `norm_final.weight`,
# which the converter drops, is not written. The context refiner's blocks have no modulation: their `norm1` is a plain
# norm (diffusers' converter knows that only for context_refiner.0 and .1, as the real model has).

LUMINA2_TOP = {"x_embedder.": "x_embedder.", "time_caption_embed.caption_embedder.": "cap_embedder.",
               "time_caption_embed.timestep_embedder.linear_1.": "t_embedder.mlp.0.",
               "time_caption_embed.timestep_embedder.linear_2.": "t_embedder.mlp.2.",
               "norm_out.linear_1.": "final_layer.adaLN_modulation.1.", "norm_out.linear_2.": "final_layer.linear."}
LUMINA2_BLOCK = {  # inside layers.N., noise_refiner.N. and context_refiner.N.
    "attn.qkv.": "attention.qkv.", "attn.to_out.0.": "attention.out.",
    "attn.norm_q.": "attention.q_norm.", "attn.norm_k.": "attention.k_norm.",
    "feed_forward.linear_1.": "feed_forward.w1.", "feed_forward.linear_2.": "feed_forward.w2.",
    "feed_forward.linear_3.": "feed_forward.w3.", "norm2.": "attention_norm2.",
    "ffn_norm1.": "ffn_norm1.", "ffn_norm2.": "ffn_norm2.",
}
LUMINA2_MODULATED = {**LUMINA2_BLOCK, "norm1.linear.": "adaLN_modulation.1.", "norm1.norm.": "attention_norm1."}
LUMINA2_CONTEXT = {**LUMINA2_BLOCK, "norm1.": "attention_norm1."}
LUMINA2_BLOCKS = {"layers": LUMINA2_MODULATED, "noise_refiner": LUMINA2_MODULATED, "context_refiner": LUMINA2_CONTEXT}


def _lumina2_prefixes(transformer) -> dict[str, tuple[str, dict]]:
    return _block_prefixes(transformer, LUMINA2_TOP, {blocks: (blocks, table) for blocks, table in LUMINA2_BLOCKS.items()})


def _lumina2_state(transformer, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    state = dict(state)
    for blocks in LUMINA2_BLOCKS:
        for n in range(len(getattr(transformer, blocks))):
            _fuse(state, f"{blocks}.{n}.attn.", ("to_q", "to_k", "to_v"), "qkv")
    return state


# --- the layouts ---------------------------------------------------------------------------------------------------


def _unet_original(unet, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return _rename(state, _unet_prefixes(unet), "")


def _sd3_original(transformer, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return _rename(_sd3_state(transformer, state), _sd3_prefixes(transformer), "")


def _flux_original(transformer, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    state = _scale_shift_swapped(_flux_fused(transformer, state, tuple(FLUX_FUSED)), ("norm_out.linear",))
    return _rename(state, _block_prefixes(transformer, FLUX_TOP, FLUX_BLOCKS), "")


def _flux2_original(transformer, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # the double blocks' q, k, v fused (the single blocks' are fused in diffusers too)
    state = _scale_shift_swapped(_flux_fused(transformer, state, ("transformer_blocks",)), ("norm_out.linear",))
    return _rename(state, _block_prefixes(transformer, FLUX2_TOP, FLUX2_BLOCKS), "")


def _chroma_original(transformer, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return _rename(_flux_fused(transformer, state, tuple(FLUX_FUSED)), _chroma_prefixes(transformer), "")


def _zimage_original(transformer, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return _rename(_zimage_state(transformer, state), _zimage_prefixes(transformer), "")


def _lumina2_original(transformer, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return _rename(_lumina2_state(transformer, state), _lumina2_prefixes(transformer), "")


def _same_names(transformer, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Qwen-Image and HiDream were published in diffusers' own names (their converters only strip a prefix)."""
    return dict(state)


@dataclass(frozen=True)
class Layout:
    """A family's original layout: `rename(denoiser, state)` gives a state dict keyed like the denoiser's in the
    original names (without `prefix`, where the denoiser's keys sit in a single file)."""

    family: str
    prefix: str
    rename: Callable[[torch.nn.Module, dict[str, torch.Tensor]], dict[str, torch.Tensor]]
    whole: bool  # whether the single file holds the whole pipeline (VAE and text encoders too)


LAYOUTS = {"unet": Layout("unet", "model.diffusion_model.", _unet_original, True),
           "sd3": Layout("sd3", "model.diffusion_model.", _sd3_original, False),
           "flux": Layout("flux", "", _flux_original, False),
           "flux2": Layout("flux2", "", _flux2_original, False),
           "chroma": Layout("chroma", "", _chroma_original, False),
           "zimage": Layout("zimage", "", _zimage_original, False),
           "lumina2": Layout("lumina2", "", _lumina2_original, False),
           "qwenimage": Layout("qwenimage", "", _same_names, False),
           "hidream": Layout("hidream", "model.diffusion_model.", _same_names, False)}


def original_checkpoint(pipe, family: str) -> dict[str, torch.Tensor]:
    """The single file of `pipe` in its family's original layout: a U-Net pipeline's whole checkpoint (denoiser,
    VAE, text encoders), an SD3 or Flux pipeline's denoiser."""
    layout = LAYOUTS[family]
    net = pipe.unet if family == "unet" else pipe.transformer
    state = {layout.prefix + k: v for k, v in layout.rename(net, dict(net.state_dict())).items()}
    if layout.whole:
        state.update(_ldm_vae_state(pipe.vae))
        te = pipe.text_encoder
        sdxl = getattr(pipe, "text_encoder_2", None) is not None
        if not sdxl and te.config.hidden_act == "gelu":  # SD 2.x: OpenCLIP ViT-H, kept in OpenCLIP's names
            state.update(_rename(_open_clip_state(te), _open_clip_prefixes(te), "cond_stage_model.model."))
        else:  # OpenAI CLIP in transformers' names (>= 5.6 flattened CLIPTextModel's `text_model.` level; LDM keeps it)
            prefix = ("conditioner.embedders.0." if sdxl else "cond_stage_model.") + "transformer."
            prefix += "" if hasattr(te, "text_model") else "text_model."
            state.update({prefix + k: v for k, v in te.state_dict().items()})
        if sdxl:
            te2 = pipe.text_encoder_2
            state.update(_rename(_open_clip_state(te2), _open_clip_prefixes(te2), "conditioner.embedders.1.model."))
    return {k: v.detach().contiguous() for k, v in state.items()}
