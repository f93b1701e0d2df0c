"""Image grids a person can look at: tiny images upscaled with crisp pixels, optional row labels.

Example:
    >>> from cadiff.report import image_grid
    >>> image_grid(images, cols=8).save("grid.png")  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw


def image_grid(images: np.ndarray, cols: int = 8, scale: int | None = None, row_labels: Sequence[str] | None = None,
               pad: int = 2) -> Image.Image:
    """Tile uint8 images (N, H, W, 3) into a grid; small images are upscaled (nearest) to about 128 px."""
    images = np.asarray(images)
    n, h, w = images.shape[:3]
    cols = max(1, min(cols, n))
    rows = -(-n // cols)
    scale = scale or max(1, 128 // max(h, w))
    hs, ws = h * scale, w * scale
    label_w = 0 if not row_labels else 8 + 7 * max(len(s) for s in row_labels)
    canvas = Image.new("RGB", (label_w + cols * (ws + pad) + pad, rows * (hs + pad) + pad), "white")
    for i, img in enumerate(images):
        r, c = divmod(i, cols)
        tile = Image.fromarray(img).resize((ws, hs), Image.NEAREST)
        canvas.paste(tile, (label_w + pad + c * (ws + pad), pad + r * (hs + pad)))
    if row_labels:
        draw = ImageDraw.Draw(canvas)
        for r, text in enumerate(row_labels[:rows]):
            draw.text((4, pad + r * (hs + pad) + hs // 2 - 5), text, fill="black")
    return canvas


def stack_grids(grids: Sequence[Image.Image], titles: Sequence[str] | None = None, gap: int = 16) -> Image.Image:
    """Stack grids vertically (e.g. before / after), each under its title."""
    title_h = 14 if titles else 0
    width = max(g.width for g in grids)
    height = sum(g.height + title_h + gap for g in grids)
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    y = 0
    for i, g in enumerate(grids):
        if titles:
            draw.text((4, y), titles[i], fill="black")
        canvas.paste(g, (0, y + title_h))
        y += g.height + title_h + gap
    return canvas
