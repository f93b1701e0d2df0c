"""Metric adapters, each a small wrapper around a well-kept library that records its version and settings.

Example:
    >>> from cadiff.evaluation.metrics import build_metrics
    >>> [m.name for m in build_metrics(["shapes"])]             # doctest: +SKIP
    ['shapes']
"""

from __future__ import annotations

from typing import Any

from cadiff.errors import BadInput
from cadiff.evaluation.metrics.base import ImageSource, Metric, MissingDependencyError
from cadiff.evaluation.metrics.clip_score import ClipScore
from cadiff.evaluation.metrics.fid import FID
from cadiff.evaluation.metrics.lpips import LPIPS
from cadiff.evaluation.metrics.nudity import EXPOSED_CLASSES, NudeNetMetric
from cadiff.evaluation.metrics.objects import ObjectAccuracy
from cadiff.evaluation.metrics.shapes import ShapesAccuracy, erase_keep

METRICS = ("shapes", "nudenet", "clip", "fid", "lpips", "object")


def build_metrics(names: list[str], options: dict[str, Any] | None = None) -> list[Metric]:
    """Metric adapters by name; `options` holds their settings (judge_weights, clip_weights, resnet_weights,
    fid_reference, fid_weights, lpips_reference, lpips_net, lpips_weights, lpips_heads, nudenet_threshold)."""
    o = {k: v for k, v in (options or {}).items() if v is not None}
    out: list[Metric] = []
    for name in dict.fromkeys(names):
        if name == "shapes":
            out.append(ShapesAccuracy(o.get("judge_weights")))
        elif name == "nudenet":
            out.append(NudeNetMetric(threshold=o.get("nudenet_threshold", 0.5)))
        elif name == "clip":
            out.append(ClipScore(o["clip_weights"]) if "clip_weights" in o else ClipScore())
        elif name == "object":
            out.append(ObjectAccuracy(o["resnet_weights"]) if "resnet_weights" in o else ObjectAccuracy())
        elif name == "fid":
            if "fid_reference" not in o:
                raise BadInput("the fid metric needs reference images: pass --fid-reference DIR (a folder of real "
                               "images)")
            out.append(FID(o["fid_reference"], weights=o.get("fid_weights")))
        elif name == "lpips":
            if "lpips_reference" not in o:
                raise BadInput("the lpips metric compares with the unedited model's images: pass --lpips-reference "
                               "RESULTS_DIR (an evaluation of the unedited model with the same prompts)")
            out.append(LPIPS(o["lpips_reference"], net=o.get("lpips_net", "alex"), weights=o.get("lpips_weights"),
                             heads=o.get("lpips_heads")))
        else:
            raise BadInput(f"unknown metric '{name}'; choose from {', '.join(METRICS)}")
    return out


__all__ = [
    "EXPOSED_CLASSES", "FID", "LPIPS", "METRICS", "ClipScore", "ImageSource", "Metric", "MissingDependencyError",
    "NudeNetMetric", "ObjectAccuracy", "ShapesAccuracy", "build_metrics", "erase_keep",
]
