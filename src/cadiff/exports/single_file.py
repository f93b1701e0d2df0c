"""The single-file checkpoint in the family's original layout (`layouts`): for SD 1.x and SDXL the whole checkpoint
(denoiser, VAE, text encoders) that A1111's and ComfyUI's checkpoint loaders read; for the transformer families with
a layout (SD3, Flux.1, Flux.2, Chroma, Z-Image, Lumina 2, Qwen-Image, HiDream) the denoiser alone, as their own
files are published (ComfyUI's diffusion-model loader reads it; the VAE and text
encoders come from the model's own files). diffusers' `from_single_file` reads it back to the same weights.

Example:
    $ cadiff export runs/no-circle --format single-file --out no-circle.safetensors
"""

from __future__ import annotations

from pathlib import Path

from safetensors.torch import save_file

from cadiff.exports import Edit, ExportFormat, register_format
from cadiff.exports.layouts import LAYOUTS, original_checkpoint


@register_format
class SingleFile(ExportFormat):
    name = "single-file"
    summary = ("the edited model as one checkpoint in its original layout: SD 1.x / 2.x / SDXL whole, the "
               "transformer families with a layout the denoiser")
    difference = False

    def families(self) -> tuple[str, ...]:
        return tuple(LAYOUTS)

    def write(self, edit: Edit, path: Path) -> None:
        state = {k: v.cpu() for k, v in original_checkpoint(edit.edited, edit.family).items()}
        save_file(state, str(path), metadata=edit.metadata(self.name))
