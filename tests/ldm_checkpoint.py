"""Test-only: whole single files of tiny pipelines in the original layouts, from cadiff's own layouts
(`cadiff.exports.layouts`: the denoiser, SD 1.x / SDXL whole checkpoints) plus what only the loading tests need: an SD3
file with its VAE and two CLIP text encoders (no T5: the tiny pipelines have no third text encoder), in the names
`is_clip_sd3_model` and `is_open_clip_sd3_model` look for.
"""

from __future__ import annotations

import torch

from cadiff.exports.layouts import _ldm_vae_state, original_checkpoint


def to_ldm_state_dict(pipe) -> dict[str, torch.Tensor]:
    """The UNet, VAE and text encoder(s) of an SD 1.x or SDXL pipeline, keyed as an original single-file checkpoint."""
    return original_checkpoint(pipe, "unet")


def _sd3_clip_state(te, prefix: str) -> dict[str, torch.Tensor]:
    """transformers' CLIP keys under `prefix`, with the `text_model.` level SD3 checkpoints keep (flattened models,
    transformers >= 5.6, lack it)."""
    inner = "" if hasattr(te, "text_model") else "text_model."
    return {prefix + (k if k.startswith("text_projection.") else inner + k): v for k, v in te.state_dict().items()}


def to_sd3_single_file(pipe) -> dict[str, torch.Tensor]:
    """The MMDiT, VAE and two CLIP text encoders of an SD3 pipeline, keyed as an original single-file checkpoint."""
    if getattr(pipe, "text_encoder_3", None) is not None:
        raise NotImplementedError("T5 (text_encoder_3) is not written")
    state = original_checkpoint(pipe, "sd3")
    state.update(_ldm_vae_state(pipe.vae))
    state.update(_sd3_clip_state(pipe.text_encoder, "text_encoders.clip_l.transformer."))
    state.update(_sd3_clip_state(pipe.text_encoder_2, "text_encoders.clip_g.transformer."))
    return {k: v.detach().contiguous().clone() for k, v in state.items()}


def to_flux_single_file(pipe) -> dict[str, torch.Tensor]:
    """The transformer of a Flux pipeline, keyed as Black Forest Labs' original single file."""
    return {k: v.clone() for k, v in original_checkpoint(pipe, "flux").items()}
