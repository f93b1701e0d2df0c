"""The amplify objective: J = - sum_t ||out(z_t, c) - target||^2, minus the denoising loss on concept images x0
(the model's own samples, or a folder of images), target the noise or the velocity per the prediction type: the
weights that work against the concept score negative."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from cadiff.adapters import adapter_for
from cadiff.attribution.estimators import Row, amplify_samples, generated_latents, image_latents
from cadiff.attribution.objectives import Objective, Samples, register_objective
from cadiff.errors import BadInput, NotAFolder

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


def read_image_folder(folder: str | Path, size: int) -> torch.Tensor:
    """Images of a folder as (N, 3, size, size) floats in [0, 1]; clear errors for a missing/empty/unreadable folder."""
    from PIL import Image

    folder = Path(folder)
    if not folder.is_dir():
        raise NotAFolder(f"image folder {folder} does not exist or is not a folder")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise BadInput(f"image folder {folder} holds no images ({', '.join(IMAGE_SUFFIXES)}); put concept images there")
    arrays = []
    for f in files:
        try:
            with Image.open(f) as im:
                arrays.append(np.asarray(im.convert("RGB").resize((size, size), Image.BICUBIC)))
        except Exception as exc:
            raise BadInput(f"cannot read image {f}: {exc}; remove or replace it") from exc
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 255.0


@register_objective
class Amplify(Objective):
    name = "amplify"
    sign = -1.0
    select_sign = "negative"
    takes_images = True

    def samples(self, pipe, denoiser, rows, *, steps, guidance, estimator, base_prompt, batch_size, images, only,
                tick):
        if images is None:
            x0 = generated_latents(pipe, rows, steps, guidance, batch_size, tick=tick)
            return Samples(rows, amplify_samples(pipe, denoiser, rows, x0, steps, batch_size, guidance, tick=tick, only=only))
        # the target's rows become one per image; the concepts to keep are still generated
        pixels = read_image_folder(images, adapter_for(denoiser).image_size(pipe, denoiser))
        image_rows = [Row(rows[0].prompt, i, 0) for i in range(len(pixels))]
        x0_images = torch.cat([image_latents(pipe, pixels[i : i + batch_size])
                               for i in range(0, len(pixels), batch_size)])
        kept = [r for r in rows if r.group > 0]
        x0_kept = generated_latents(pipe, kept, steps, guidance, batch_size) if kept else x0_images[:0]
        rows = image_rows + kept
        x0 = torch.cat([x0_images.to(x0_kept.dtype), x0_kept])
        return Samples(rows, amplify_samples(pipe, denoiser, rows, x0, steps, batch_size, guidance, tick=tick, only=only),
                       {"n_images": len(pixels)})
