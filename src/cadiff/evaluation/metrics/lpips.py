"""LPIPS (Zhang et al. 2018; AlexNet by default) between each generated image and the unedited model's image for the
same row: the reference is another results folder made with the same prompts and seeds.

The network is LPIPS v0.1: an ImageNet backbone in torchvision's weight layout (`alexnet-owt-7be5be79.pth` or
`vgg16-397923af.pth`, from the torch hub cache or a file you give) and the learned per-layer heads that torchmetrics
ships in its wheel (or an `lpips` package `weights/v0.1/<net>.pth` you give). The backbone's layers are declared here
in plain torch, so torchvision is not needed: its PyPI wheel cannot load beside a CPU-only torch. cadiff never
downloads weights; both files are read with `torch.load(..., weights_only=True)`.

Example:
    >>> from cadiff.evaluation.metrics import LPIPS
    >>> LPIPS("runs/eval-unedited").score(images, rows)["lpips"]     # doctest: +SKIP
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from cadiff.errors import BadInput, MissingFile
from cadiff.evaluation.metrics.base import ImageSource, Metric, require
from cadiff.evaluation.prompts import PromptRow

# torchvision's file names for the ImageNet backbones.
BACKBONE_FILES = {"alex": "alexnet-owt-7be5be79.pth", "vgg": "vgg16-397923af.pth"}
MIN_SIZE = 64  # smaller images are upscaled (nearest) to this size before LPIPS
# LPIPS input scaling (applied to images in [-1, 1]) and the backbone layers whose ReLU outputs are compared.
SHIFT, SCALE = (-0.030, -0.088, -0.188), (0.458, 0.448, 0.450)
_VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)


def _alexnet_features() -> tuple[nn.Sequential, tuple[int, ...]]:
    """torchvision's AlexNet `features` up to relu5, and the indices of the five ReLUs LPIPS reads."""
    layers = [nn.Conv2d(3, 64, 11, stride=4, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
              nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
              nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(), nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(),
              nn.Conv2d(256, 256, 3, padding=1), nn.ReLU()]
    return nn.Sequential(*layers), (1, 4, 7, 9, 11)


def _vgg16_features() -> tuple[nn.Sequential, tuple[int, ...]]:
    """torchvision's VGG-16 `features` up to relu5_3, and the indices of relu1_2, relu2_2, relu3_3, relu4_3, relu5_3."""
    layers: list[nn.Module] = []
    channels = 3
    for v in _VGG16:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(channels, int(v), 3, padding=1), nn.ReLU()]
            channels = int(v)
    return nn.Sequential(*layers), (3, 8, 15, 22, 29)


_BACKBONES = {"alex": _alexnet_features, "vgg": _vgg16_features}


class LPIPSNetwork(nn.Module):
    """LPIPS v0.1: unit-normalised backbone features, squared differences weighted by 1x1 heads, averaged and summed.

    Example:
        >>> net = LPIPSNetwork("alex")          # random weights; use from_files() for the real ones
        >>> net(torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)).shape
        torch.Size([2])
    """

    def __init__(self, net: str = "alex"):
        super().__init__()
        if net not in _BACKBONES:
            raise BadInput(f"unknown LPIPS network '{net}'; use one of {', '.join(_BACKBONES)}")
        self.net = net
        self.features, self.taps = _BACKBONES[net]()
        widths = [self.features[i - 1].out_channels for i in self.taps]
        self.heads = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in widths)
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1), persistent=False)
        self.eval().requires_grad_(False)

    @classmethod
    def from_files(cls, net: str, backbone: str | Path, heads: str | Path) -> "LPIPSNetwork":
        """Load a torchvision backbone file (its `features.*` tensors) and an LPIPS heads file (`lin<k>.model.*`)."""
        model = cls(net)
        state = torch.load(backbone, map_location="cpu", weights_only=True)
        features = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
        wanted = set(model.features.state_dict())
        if not wanted <= set(features):
            raise BadInput(f"{backbone} is not a torchvision {net} weights file: it lacks "
                           f"features.{sorted(wanted - set(features))[0]}")
        model.features.load_state_dict({k: features[k] for k in wanted})
        state = torch.load(heads, map_location="cpu", weights_only=True)
        for k, head in enumerate(model.heads):
            key = next((name for name in state if name.startswith(f"lin{k}.") and name.endswith(".weight")), None)
            if key is None or state[key].shape != head.weight.shape:
                raise BadInput(f"{heads} is not an LPIPS v0.1 heads file for '{net}' (lin{k} missing or misshapen)")
            head.weight.copy_(state[key])
        return model

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Distance per image pair for images (N, 3, H, W) in [0, 1]."""
        a, b = ((2 * x - 1 - self.shift) / self.scale for x in (a, b))
        total = torch.zeros(a.shape[0], device=a.device)
        head = iter(self.heads)
        for i, layer in enumerate(self.features):
            a, b = layer(a), layer(b)
            if i in self.taps:
                fa, fb = (x / torch.sqrt(1e-8 + (x ** 2).sum(1, keepdim=True)) for x in (a, b))
                total = total + next(head)((fa - fb) ** 2).mean((1, 2, 3))
        return total


def default_heads(net: str) -> Path:
    """The LPIPS v0.1 heads file torchmetrics ships for `net`."""
    require("torchmetrics", "metrics")
    spec = importlib.util.find_spec("torchmetrics.functional.image")
    path = Path(spec.origin).parent / "lpips_models" / f"{net}.pth"  # type: ignore[union-attr,arg-type]
    if not path.is_file():
        raise MissingFile(f"LPIPS heads {path} not found in the installed torchmetrics; pass --lpips-heads FILE "
                          "(the lpips package's weights/v0.1/<net>.pth)")
    return path


def backbone_weights(net: str, path: str | Path | None) -> Path:
    """The backbone file: `path`, or torchvision's file in the torch hub cache; FileNotFoundError naming it."""
    if net not in BACKBONE_FILES:
        raise BadInput(f"unknown LPIPS network '{net}'; use one of {', '.join(BACKBONE_FILES)}")
    if path is not None:
        candidate = Path(path).expanduser()
        if not candidate.is_file():
            raise MissingFile(f"LPIPS backbone weights file {candidate} not found")
        return candidate
    candidate = Path(torch.hub.get_dir()) / "checkpoints" / BACKBONE_FILES[net]
    if not candidate.is_file():
        raise MissingFile(f"LPIPS backbone weights not found at {candidate}; cadiff never downloads. Copy "
                          f"torchvision's {BACKBONE_FILES[net]} there or pass --lpips-weights FILE")
    return candidate


class LPIPS(Metric):
    """Per-row LPIPS distance to the same row's image in the `reference` results folder (lower = closer)."""

    name = "lpips"
    library = "torchmetrics"

    def __init__(self, reference: str | Path, net: str = "alex", weights: str | Path | None = None,
                 heads: str | Path | None = None):
        self.backbone = backbone_weights(net, weights)
        self.heads = Path(heads).expanduser() if heads else default_heads(net)
        if not self.heads.is_file():
            raise MissingFile(f"LPIPS heads file {self.heads} not found")
        reference = Path(reference).expanduser()
        if not (reference / "images").is_dir():
            raise MissingFile(f"LPIPS reference {reference} is not a results folder (no images/); evaluate the "
                              "unedited model first with the same prompts and give its folder")
        self.reference, self.net = reference, net
        self.network = LPIPSNetwork.from_files(net, self.backbone, self.heads)

    def settings(self) -> dict[str, Any]:
        return {"reference": str(self.reference), "net": self.net, "version": "LPIPS v0.1",
                "backbone": str(self.backbone), "heads": str(self.heads), "min_size": MIN_SIZE, "upscale": "nearest"}

    @torch.no_grad()
    def score(self, images: np.ndarray, rows: Sequence[PromptRow]) -> dict[str, list]:
        reference = ImageSource(self.reference / "images").load([r.index for r in rows])
        if reference.shape != images.shape:
            raise BadInput(f"LPIPS reference images are {reference.shape[1:3]}, generated ones {images.shape[1:3]}")
        a, b = (torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255 for x in (images, reference))
        if a.shape[-1] < MIN_SIZE:
            a, b = (torch.nn.functional.interpolate(x, size=(MIN_SIZE, MIN_SIZE), mode="nearest") for x in (a, b))
        return {"lpips": [round(float(v), 5) for v in self.network(a, b)]}

    def summarize(self, table: list[dict[str, Any]], images: ImageSource) -> dict[str, Any]:
        values = [float(r["lpips"]) for r in table]
        return {"mean": round(float(np.mean(values)), 5) if values else None, "n": len(values)}
