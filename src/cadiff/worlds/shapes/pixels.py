"""A second judge of shapes images that reads shape, colour and texture straight from the pixels by fixed rules of
the world (no training), so certificates earned against the trained evaluator can be confirmed independently.

The rules:
  foreground  pixels that differ from the border's median colour by more than 40 in some channel (as `shape_mask`),
              kept to the largest 8-connected component; its holes filled (the inside of an outlined or striped
              shape) give the shape's silhouette.
  colour      the median over the strongly coloured foreground pixels (those differing from the background by at
              least 70 % of the image's contrast, its 95th percentile) of each pixel's colour unmixed from the
              background (a pixel showing a share `a` of colour c over background b is a c + (1 - a) b, and `a` is
              its difference over the contrast), read as the palette colour (`RGB`) nearest in CIELAB (D65, CIE76
              distance, the standard perceptual colour difference). A mix of the palette's purple and blue is thus
              read as blue until it is 63 % purple by RGB weight (not 50 %, as RGB distance would have it): CIELAB
              puts purple and blue only 32 apart, and a half-and-half mix looks blue.
  shape       template matching with the world's own geometry (`unit_sdf`): each shape placed with its centroid on
              the silhouette's and scaled to its area, then moved (radius +-6 %, x and y +-0.5 px, each tried once,
              kept where it raises the IoU with the silhouette); the shape whose template has the highest IoU.
  texture     the winner's template, fitted again in half steps, drawn with each texture by the world's own rule
              (`texture_alpha`; stripes at 18 phases): the texture whose drawing best explains (least squared
              error) the observed alpha, each pixel's difference from the background over the image's contrast.

Example:
    >>> from cadiff.worlds.shapes import render
    >>> from cadiff.worlds.shapes.pixels import PixelReader
    >>> PixelReader().predict(render(["star"], ["purple"], ["striped"], seed=0).images)
    {'shape': ['star'], 'colour': ['purple'], 'texture': ['striped']}
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from cadiff.worlds.shapes.world import COLOURS, RGB, SHAPES, SIZE, STRIPE_PERIOD_PX, TEXTURES
from cadiff.worlds.shapes.world import texture_alpha, unit_sdf

FOREGROUND_LEVEL = 40.0
STRONG_SHARE = 0.7
UNIT_HALF_WIDTH = 1.25  # the unit-shape grid spans [-1.25, 1.25]^2
UNIT_CELLS = 161
COARSE, FINE = (0.06, 0.5), (0.03, 0.25)  # template fitting steps: a share of the radius, pixels
PHASES = 18


def lab(rgb: np.ndarray | torch.Tensor) -> torch.Tensor:
    """CIELAB (D65) of sRGB colours (..., 3) in 0..255."""
    c = torch.as_tensor(rgb, dtype=torch.float64) / 255
    c = torch.where(c > 0.04045, ((c + 0.055) / 1.055) ** 2.4, c / 12.92)
    to_xyz = torch.tensor([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]], dtype=c.dtype)
    xyz = c @ to_xyz.T / torch.tensor([0.95047, 1.0, 1.08883], dtype=c.dtype)
    f = torch.where(xyz > 216 / 24389, xyz.clamp_min(1e-12) ** (1 / 3), (24389 / 27 * xyz + 16) / 116)
    return torch.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], -1)


def nearest_colour(rgb: np.ndarray | torch.Tensor) -> list[str]:
    """The palette colour nearest to each sRGB colour (N, 3) in CIELAB: the reader's colour rule."""
    palette = lab(np.array([RGB[c] for c in COLOURS]))
    return [COLOURS[i] for i in torch.cdist(lab(rgb).reshape(-1, 3), palette).argmin(1)]


def _pixels(images: np.ndarray | Sequence[Image.Image]) -> torch.Tensor:
    """Images as float (N, 32, 32, 3) in 0..255, from uint8, float in [0, 1] or PIL images of any size."""
    if not isinstance(images, np.ndarray):
        images = np.stack([np.asarray(im.convert("RGB")) for im in images])
    x = torch.as_tensor(images, dtype=torch.float32)
    if images.dtype != np.uint8:
        x = x.clamp(0, 1) * 255
    if x.shape[1:3] != (SIZE, SIZE):
        x = F.interpolate(x.permute(0, 3, 1, 2), size=(SIZE, SIZE), mode="area").permute(0, 2, 3, 1)
    return x


def _spread(x: torch.Tensor, diagonal: bool) -> torch.Tensor:
    """The maximum over each pixel's neighbourhood of (N, H, W) `x`: 3x3, or the 4 neighbours and itself."""
    p = F.pad(x, (1, 1, 1, 1))
    rows = torch.maximum(torch.maximum(p[:, :-2], p[:, 1:-1]), p[:, 2:])  # vertical neighbours
    if diagonal:
        return torch.maximum(torch.maximum(rows[..., :-2], rows[..., 1:-1]), rows[..., 2:])
    return torch.maximum(torch.maximum(p[:, 1:-1, :-2], rows[..., 1:-1]), p[:, 1:-1, 2:])


def _flood(x: torch.Tensor, within: torch.Tensor, diagonal: bool) -> torch.Tensor:
    """Spread `x` (a mask or labels, the largest winning) inside `within` until nothing changes."""
    while True:
        grown = _spread(x, diagonal) * within
        if torch.equal(grown, x):
            return x
        x = grown


def silhouettes(foreground: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The largest 8-connected component of each (N, H, W) foreground mask, and it with its holes filled."""
    n, h, w = foreground.shape
    ids = torch.arange(1, h * w + 1, dtype=torch.int32).reshape(1, h, w) * foreground
    labels = _flood(ids, foreground, diagonal=True).long()
    counts = torch.zeros(n, h * w + 1).scatter_add_(1, labels.reshape(n, -1), torch.ones(n, h * w))
    counts[:, 0] = 0
    main = foreground & (labels == counts.argmax(1)[:, None, None])
    edge = torch.zeros(h, w, dtype=torch.bool)
    edge[[0, -1]] = edge[:, [0, -1]] = True
    outside = _flood((~main & edge).to(torch.uint8), ~main, diagonal=False)  # background reached from the border
    return main, outside == 0


class PixelReader:
    """Reads shape, colour and texture of shapes images from pixels by rules; `predict` has the evaluator's contract
    and always answers one of the world's labels per attribute."""

    def __init__(self):
        cells = (torch.arange(UNIT_CELLS, dtype=torch.float32) / (UNIT_CELLS - 1) * 2 - 1) * UNIT_HALF_WIDTH
        yy, xx = torch.meshgrid(cells, cells, indexing="ij")
        points = torch.stack([xx.flatten(), yy.flatten()], 1)[None]
        self.unit = torch.stack([unit_sdf(k, points)[0].reshape(UNIT_CELLS, UNIT_CELLS) for k in SHAPES])  # S, C, C
        inside = (self.unit < 0).flatten(1).float()
        self.area = inside.sum(1) * (2 * UNIT_HALF_WIDTH / (UNIT_CELLS - 1)) ** 2  # of each unit shape
        self.centroid = inside @ torch.stack([xx.flatten(), yy.flatten()], 1) / inside.sum(1)[:, None]  # S, 2
        grid = torch.arange(SIZE, dtype=torch.float32) + 0.5
        yy, xx = torch.meshgrid(grid, grid, indexing="ij")
        self.pixels = torch.stack([xx, yy], -1)  # H, W, 2 (x, y)

    def _distance(self, k: int, centre: torch.Tensor, radius: torch.Tensor) -> torch.Tensor:
        """Signed distance in unit-shape units (N, H, W) to shape k with its centroid at `centre` (N, 2), its radius
        `radius` (N,) pixels; times the radius it is in pixels."""
        scale = 1 / (radius * UNIT_HALF_WIDTH)[:, None, None, None]
        origin = centre - radius[:, None] * self.centroid[k]
        local = (self.pixels - origin[:, None, None]) * scale
        d = F.grid_sample(self.unit[k][None, None], local.reshape(1, -1, SIZE, 2), align_corners=True,
                          padding_mode="border")
        return d.reshape(-1, SIZE, SIZE)

    def _fit(self, k: int, filled: torch.Tensor, edge: torch.Tensor, centre: torch.Tensor, radius: torch.Tensor,
             step: tuple[float, float]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Move shape k's template (a pixel is in it where the shape's signed distance is below `edge` (N,) pixels)
        one `step` (a share of the radius, pixels) at a time in radius, x and y while its IoU with the silhouettes
        (N, H, W) grows; the best IoU (N,), centre (N, 2) and radius (N,)."""
        count = filled.flatten(1).sum(1)

        def iou(centre, radius):
            template = self._distance(k, centre, radius) < (edge / radius)[:, None, None]
            inter = (template & filled).flatten(1).sum(1)
            return inter / (template.flatten(1).sum(1) + count - inter).clamp_min(1)

        best = iou(centre, radius)
        shift = torch.eye(2) * step[1]
        for move in ((0, 1 + step[0]), (0, 1 - step[0]), (shift[0], 1), (-shift[0], 1), (shift[1], 1), (-shift[1], 1)):
            c, r = centre + move[0], radius * move[1]
            score = iou(c, r)
            better = score > best
            best = torch.where(better, score, best)
            centre, radius = torch.where(better[:, None], c, centre), torch.where(better, r, radius)
        return best, centre, radius

    def _texture_errors(self, sdf: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        """Squared error (N, 3) between the observed alpha (N, H, W) and each texture's alpha drawn by the world's
        rule on the fitted template `sdf` (N, H, W); for stripes the best of PHASES phases."""
        u = self.pixels.sum(-1) / math.sqrt(2) + torch.arange(PHASES)[:, None, None] * STRIPE_PERIOD_PX / PHASES
        textures = torch.tensor([0, 2] + [1] * PHASES)[:, None, None]  # solid, outlined, striped at each phase
        u = torch.cat([torch.zeros(2, SIZE, SIZE), u])
        drawn = texture_alpha(sdf[:, None], u[None], textures[None])  # N, 2 + PHASES, H, W
        error = ((drawn - alpha[:, None]) ** 2).sum((2, 3))
        return torch.stack([error[:, 0], error[:, 2:].amin(1), error[:, 1]], 1)

    def read(self, images: np.ndarray | Sequence[Image.Image]) -> dict[str, np.ndarray]:
        """The measurements behind `predict`, per image: the colour statistic (N, 3), every shape's IoU (N, S),
        every texture's error (N, T) and the silhouette (N, H, W)."""
        img = _pixels(images)
        border = torch.cat([img[:, 0], img[:, -1], img[:, :, 0], img[:, :, -1]], 1)
        background = border.median(1).values[:, None, None]
        diff = (img - background).abs().amax(-1)  # N, H, W
        main, filled = silhouettes(diff > FOREGROUND_LEVEL)
        contrast = torch.where(main, diff, torch.nan).flatten(1).nanquantile(0.95, 1).nan_to_num(255.0).clamp_min(1)
        strong = main & (diff >= STRONG_SHARE * contrast[:, None, None])
        unmixed = background + (img - background) * (contrast[:, None, None] / diff.clamp_min(1))[..., None]
        colour = torch.where(strong[..., None], unmixed, torch.nan).flatten(1, 2).nanmedian(1).values.nan_to_num(0.0)
        edge = 0.5 - FOREGROUND_LEVEL / contrast  # pixels deeper than this are foreground (coverage 0.5 - distance)
        area = filled.flatten(1).sum(1).float().clamp_min(1)
        centre = (filled[..., None] * self.pixels).flatten(1, 2).sum(1) / area[:, None]
        fits = [self._fit(k, filled, edge, centre, (area / self.area[k]).sqrt(), COARSE) for k in range(len(SHAPES))]
        iou = torch.stack([f[0] for f in fits], 1)
        shape = iou.argmax(1)
        best = torch.zeros(len(img), SIZE, SIZE)
        for k, (_, c, r) in enumerate(fits):  # the winner's template, fitted finer, draws the textures
            on = shape == k
            _, c, r = self._fit(k, filled[on], edge[on], c[on], r[on], FINE)
            best[on] = self._distance(k, c, r) * r[:, None, None]
        errors = self._texture_errors(best, (diff / contrast[:, None, None]).clamp(0, 1))
        return {"colour": colour.numpy(), "iou": iou.numpy(), "texture_error": errors.numpy(),
                "silhouette": filled.numpy()}

    def predict(self, images: np.ndarray | Sequence[Image.Image]) -> dict[str, list[str]]:
        """The shape, colour and texture name of every image (N, 32, 32, 3) uint8 (float in [0, 1] and PIL images
        are read too, as the evaluator reads them)."""
        seen = self.read(images)
        return {"shape": [SHAPES[i] for i in seen["iou"].argmax(1)], "colour": nearest_colour(seen["colour"]),
                "texture": [TEXTURES[i] for i in seen["texture_error"].argmin(1)]}
