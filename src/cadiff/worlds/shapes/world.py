"""The procedural shapes world: 32x32 images of one shape, with exact labels, captions and masks.

Every image is drawn from signed distance fields on the pixel grid (analytic anti-aliasing), all
images of a batch at once, so tens of thousands of images take seconds. The same seed gives the same
images.

Example:
    >>> from cadiff.worlds.shapes import render
    >>> batch = render(["circle", "star"], ["red", "blue"], ["solid", "striped"], seed=0)
    >>> batch.images.shape, batch.masks.shape, batch.captions()
    ((2, 32, 32, 3), (2, 32, 32), ['a red solid circle', 'a blue striped star'])
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Sequence

import numpy as np
import torch

from cadiff.errors import BadInput

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross", "heart")
COLOURS: tuple[str, ...] = ("red", "green", "blue", "yellow", "purple", "orange")
TEXTURES: tuple[str, ...] = ("solid", "striped", "outlined")
ATTRIBUTES: dict[str, tuple[str, ...]] = {"shape": SHAPES, "colour": COLOURS, "texture": TEXTURES}
CONCEPTS: tuple[str, ...] = SHAPES + COLOURS + TEXTURES
RGB: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 160, 40),
    "blue": (30, 60, 220),
    "yellow": (235, 205, 20),
    "purple": (140, 40, 180),
    "orange": (245, 125, 15),
}
SIZE = 32
RADIUS_RANGE = (6.5, 11.0)
OUTLINE_PX = 1.5
STRIPE_PERIOD_PX = 4.5
STRIPE_HALF_WIDTH_PX = 1.0


def attribute_of(word: str) -> str:
    """Which attribute ('shape', 'colour' or 'texture') a concept word names; ValueError if none."""
    for attribute, values in ATTRIBUTES.items():
        if word in values:
            return attribute
    known = ", ".join(SHAPES + COLOURS + TEXTURES)
    raise BadInput(f"'{word}' is not a shapes-world concept; known concepts: {known}")


def caption_labels(prompt: str) -> dict[str, str]:
    """The attributes a caption names ('a red circle' -> shape circle, colour red); an attribute named with two
    values ('a red or blue star') is left out."""
    named: dict[str, set[str]] = {}
    for word in prompt.lower().replace(",", " ").split():
        for attribute, values in ATTRIBUTES.items():
            if word in values:
                named.setdefault(attribute, set()).add(word)
    return {a: next(iter(v)) for a, v in named.items() if len(v) == 1}


def _polygon(kind: str) -> np.ndarray:
    """Vertices (V, 2) of a unit-size shape centred at the origin, y pointing down."""
    if kind == "square":
        s = 0.8
        return np.array([[-s, -s], [s, -s], [s, s], [-s, s]])
    if kind == "triangle":
        angles = np.deg2rad([-90, 30, 150])
        return np.stack([np.cos(angles), np.sin(angles) + 0.12], 1)
    if kind == "star":
        angles = np.deg2rad(-90 + 36 * np.arange(10))
        radius = np.where(np.arange(10) % 2 == 0, 1.0, 0.45)
        return np.stack([radius * np.cos(angles), radius * np.sin(angles) + 0.05], 1)
    if kind == "cross":
        a, b = 0.32, 0.92
        return np.array(
            [[-a, -b], [a, -b], [a, -a], [b, -a], [b, a], [a, a], [a, b], [-a, b], [-a, a], [-b, a], [-b, -a], [-a, -a]]
        )
    if kind == "heart":
        t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
        x = 16 * np.sin(t) ** 3
        y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
        pts = np.stack([x, y], 1)
        pts -= (pts.max(0) + pts.min(0)) / 2
        return pts / np.abs(pts).max() * 0.98
    raise BadInput(kind)


_POLYGONS = {kind: torch.tensor(_polygon(kind), dtype=torch.float32) for kind in SHAPES if kind != "circle"}


def _polygon_sdf(points: torch.Tensor, vertices: torch.Tensor) -> torch.Tensor:
    """Signed distance (negative inside) from points (N, G, 2) to per-image polygons (N, V, 2)."""
    a = vertices[:, None, :, :]  # N,1,V,2
    b = torch.roll(vertices, -1, dims=1)[:, None, :, :]
    p = points[:, :, None, :]  # N,G,1,2
    e, w = b - a, p - a
    h = ((w * e).sum(-1) / (e * e).sum(-1)).clamp(0, 1)
    dist = (w - e * h[..., None]).norm(dim=-1).amin(-1)
    ay, by, py = a[..., 1], b[..., 1], p[..., 1]
    crosses = (ay <= py) != (by <= py)
    x_at = a[..., 0] + (b[..., 0] - a[..., 0]) * (py - ay) / torch.where(by == ay, torch.ones_like(by), by - ay)
    inside = ((crosses & (p[..., 0] < x_at)).sum(-1) % 2) == 1
    return torch.where(inside, -dist, dist)


def unit_sdf(kind: str, points: torch.Tensor) -> torch.Tensor:
    """Signed distance (negative inside) from points (N, G, 2) in unit-shape coordinates (pixel offset from the
    centre over the radius) to the unit shape `kind`; times the radius it is the distance in pixels."""
    if kind == "circle":
        return points.norm(dim=-1) - 0.9
    return _polygon_sdf(points, _POLYGONS[kind][None].expand(len(points), -1, -1))


def _coverage(d: torch.Tensor) -> torch.Tensor:
    return (0.5 - d).clamp(0, 1)


def texture_alpha(sdf: torch.Tensor, u: torch.Tensor, textures: torch.Tensor) -> torch.Tensor:
    """How much of the shape's colour each pixel shows (0..1): `sdf` its signed distance in pixels, `u` its diagonal
    coordinate (x + y) / sqrt(2) plus the stripe phase, `textures` the texture indices (all broadcast together)."""
    fill = _coverage(sdf)
    band = fill - _coverage(sdf + OUTLINE_PX)
    stripe = _coverage((torch.remainder(u / STRIPE_PERIOD_PX, 1.0) - 0.5).abs() * STRIPE_PERIOD_PX - STRIPE_HALF_WIDTH_PX)
    return torch.where(textures == 0, fill, torch.where(textures == 1, torch.maximum(band, fill * stripe), band))


@dataclass
class ShapesBatch:
    """Rendered images (N, 32, 32, 3) uint8 with their exact labels, masks, centres (x, y) and radii in pixels."""

    images: np.ndarray
    masks: np.ndarray
    shapes: np.ndarray
    colours: np.ndarray
    textures: np.ndarray
    centres: np.ndarray
    radii: np.ndarray

    def __len__(self) -> int:
        return len(self.images)

    def captions(self) -> list[str]:
        """The full caption of every image: 'a {colour} {texture} {shape}'."""
        return [
            full_caption(SHAPES[s], COLOURS[c], TEXTURES[t]) for s, c, t in zip(self.shapes, self.colours, self.textures)
        ]

    def labels(self) -> dict[str, np.ndarray]:
        """Label indices per attribute, as the evaluator reports them."""
        return {"shape": self.shapes, "colour": self.colours, "texture": self.textures}

    def __getitem__(self, index) -> "ShapesBatch":
        """The images `index` (a boolean mask or indices) picks, with their labels."""
        return ShapesBatch(*(getattr(self, f.name)[index] for f in fields(self)))

    def shows_none(self, values: Sequence[str]) -> np.ndarray:
        """Per image, whether it shows none of `values` (shape, colour or texture names)."""
        check_values(values)
        shown = np.zeros(len(self), dtype=bool)
        for names, indices in ((SHAPES, self.shapes), (COLOURS, self.colours), (TEXTURES, self.textures)):
            shown |= np.isin(indices, [names.index(v) for v in values if v in names])
        return ~shown

    def without(self, values: Sequence[str]) -> "ShapesBatch":
        """The images that show none of `values`."""
        return self[self.shows_none(values)]


def check_values(values: Sequence[str]) -> None:
    """ValueError naming any of `values` that is no shape, colour or texture of the world."""
    unknown = sorted(set(values) - set(SHAPES) - set(COLOURS) - set(TEXTURES))
    if unknown:
        raise BadInput(f"unknown value(s) {', '.join(unknown)}; choose from {', '.join(SHAPES + COLOURS + TEXTURES)}")


def full_caption(shape: str, colour: str, texture: str) -> str:
    """The caption naming all three attributes."""
    return f"a {colour} {texture} {shape}"


def _indices(values: Sequence[str] | Sequence[int] | np.ndarray, names: tuple[str, ...]) -> np.ndarray:
    out = []
    for v in values:
        if isinstance(v, str):
            if v not in names:
                raise BadInput(f"unknown value '{v}'; expected one of {', '.join(names)}")
            out.append(names.index(v))
        else:
            out.append(int(v))
    return np.asarray(out, dtype=np.int64)


def render(
    shapes: Sequence[str] | Sequence[int] | np.ndarray,
    colours: Sequence[str] | Sequence[int] | np.ndarray,
    textures: Sequence[str] | Sequence[int] | np.ndarray,
    seed: int = 0,
    centres: np.ndarray | None = None,
    radii: np.ndarray | None = None,
) -> ShapesBatch:
    """Render one image per (shape, colour, texture) triple; position, size and background are drawn from `seed`."""
    s, c, t = _indices(shapes, SHAPES), _indices(colours, COLOURS), _indices(textures, TEXTURES)
    n = len(s)
    if not (len(c) == len(t) == n):
        raise BadInput("shapes, colours and textures must have the same length")
    rng = np.random.default_rng(seed)
    r = rng.uniform(*RADIUS_RANGE, n) if radii is None else np.asarray(radii, dtype=np.float64)
    u = rng.uniform(0, 1, (n, 2))
    if centres is None:
        centres = r[:, None] + 1 + u * (SIZE - 2 - 2 * r[:, None])
    level = rng.uniform(195, 245, (n, 1))
    tint = rng.uniform(-8, 8, (n, 3))
    gradient = rng.uniform(-12, 12, (n, 1))
    jitter = rng.uniform(-15, 15, (n, 3))
    phase = rng.uniform(0, STRIPE_PERIOD_PX, n)

    grid = torch.arange(SIZE, dtype=torch.float32) + 0.5
    yy, xx = torch.meshgrid(grid, grid, indexing="ij")
    pix = torch.stack([xx.flatten(), yy.flatten()], 1)  # G,2 (x, y)
    centre_t = torch.tensor(np.asarray(centres), dtype=torch.float32)
    r_t = torch.tensor(r, dtype=torch.float32)
    sdf = torch.empty(n, SIZE * SIZE)
    for k, kind in enumerate(SHAPES):
        idx = np.flatnonzero(s == k)
        if len(idx) == 0:
            continue
        local = (pix[None] - centre_t[idx, None, :]) / r_t[idx, None, None]  # in unit-shape coordinates
        for chunk in np.array_split(np.arange(len(idx)), max(1, len(idx) // 256)):
            sel = idx[chunk]
            sdf[sel] = unit_sdf(kind, local[chunk]) * r_t[sel, None]  # back to pixels
    u_diag = (pix[:, 0] + pix[:, 1])[None] / math.sqrt(2) + torch.tensor(phase, dtype=torch.float32)[:, None]
    alpha = texture_alpha(sdf, u_diag, torch.tensor(t)[:, None])

    y_rel = (yy.flatten() / SIZE - 0.5) * 2
    bg = torch.tensor(level + tint, dtype=torch.float32)[:, None, :] + torch.tensor(gradient, dtype=torch.float32)[
        :, None, :
    ] * y_rel[None, :, None]
    base = np.array([RGB[COLOURS[k]] for k in c], dtype=np.float64) + jitter
    fg = torch.tensor(base, dtype=torch.float32)[:, None, :]
    img = bg * (1 - alpha[..., None]) + fg * alpha[..., None]
    images = img.round().clamp(0, 255).to(torch.uint8).reshape(n, SIZE, SIZE, 3).numpy()
    masks = (sdf < 0).reshape(n, SIZE, SIZE).numpy()
    return ShapesBatch(images, masks, s, c, t, np.asarray(centres, dtype=np.float64), r)


def random_labels(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n uniformly drawn (shape, colour, texture) index triples."""
    rng = np.random.default_rng([seed, 1])
    return rng.integers(0, len(SHAPES), n), rng.integers(0, len(COLOURS), n), rng.integers(0, len(TEXTURES), n)


def render_random(n: int, seed: int = 0) -> ShapesBatch:
    """n images with uniformly random labels."""
    return render(*random_labels(n, seed), seed=seed)


def training_caption(shape: int, colour: int, texture: int, rng: np.random.Generator) -> str:
    """A caption with attributes dropped at random (empty 10 %), so the model learns partial prompts and guidance."""
    if rng.random() < 0.10:
        return ""
    words = ["a"]
    if rng.random() >= 0.25:
        words.append(COLOURS[colour])
    if rng.random() >= 0.25:
        words.append(TEXTURES[texture])
    words.append("shape" if rng.random() < 0.15 else SHAPES[shape])
    return " ".join(words)


def shape_centre(image: np.ndarray) -> tuple[float, float] | None:
    """Centre (x, y) in pixels of the foreground of a shapes image (H, W, 3 uint8), or None if nothing stands out.

    The background is light and smooth, so the foreground is whatever differs from the border colour.
    """
    img = np.asarray(image, dtype=np.float32)
    border = np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]])
    bg = np.median(border, axis=0)
    diff = np.abs(img - bg).max(-1)
    fg = diff > 40
    if fg.sum() < 4:
        return None
    ys, xs = np.nonzero(fg)
    scale = SIZE / img.shape[0]
    return float((xs.mean() + 0.5) * scale), float((ys.mean() + 0.5) * scale)


def shape_mask(image: np.ndarray) -> np.ndarray:
    """Foreground mask (H, W) bool of a shapes image (H, W, 3 uint8): pixels that differ from the border colour,
    by the rule `shape_centre` uses. Gives masks for generated images, whose true masks are unknown."""
    img = np.asarray(image, dtype=np.float32)
    border = np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]])
    return np.abs(img - np.median(border, axis=0)).max(-1) > 40
