"""Attribution: per-weight CAD scores a_i = w_i * dJ/dw_i (fp32) with the metadata to reproduce them.

Example:
    >>> attr = cadiff.attribute(pipe, "circle", preserve=["square", "star"])     # doctest: +SKIP
    >>> attr.summary()["concentration"]                                          # doctest: +SKIP
    {'top_0.1%': 0.08, 'top_1%': 0.31}
    >>> mask = attr.select(ratio=0.03)                                           # doctest: +SKIP
    >>> attr.save("circle.attr.safetensors"); cadiff.Attribution.load("circle.attr.safetensors", pipe)   # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cadiff.errors import BadInput
from cadiff.attribution.mask import Mask, check_fingerprint, read_header, write_with_header
from cadiff.models.loading import check_finite, model_fingerprint
from cadiff.attribution.selection import head_scores, join_parts, select_indices


class EmptySelectionError(BadInput):
    """A selection rule that picks no weight (e.g. a per-row ratio below 1 / the row's width)."""


@dataclass
class Attribution:
    """Scores per parameter name (fp32, same shape as the weight) and how they were computed."""

    scores: dict[str, torch.Tensor]
    metadata: dict[str, Any]

    def __post_init__(self):
        """ValueError naming the scores that are NaN or infinite: no weight could be ranked by them."""
        check_finite(self.scores, "the attribution's score of",
                     "the gradients overflowed or the model is damaged; compute it in fp32 (--dtype fp32) on an "
                     "intact model")

    @property
    def fingerprint(self) -> str | None:
        return self.metadata.get("fingerprint")

    def check_model(self, pipe) -> None:
        """ValueError if `pipe` is not the model these scores were computed on."""
        check_fingerprint(self.fingerprint, model_fingerprint(pipe), f"the attribution of {self.metadata.get('concepts')}")

    def select(self, ratio: float | None = None, count: int | None = None, sign: str = "positive",
               scope: str = "row") -> Mask:
        """Mask of the weights to zero: per-row (paper), per-matrix, global top ratio/count on one side of zero, or
        whole attention heads (scope="head")."""
        parts = self.metadata.get("parts") or {}
        indices = join_parts(select_indices(self.scores, ratio=ratio, count=count, sign=sign, scope=scope,
                                            heads=self.metadata.get("heads")), parts)
        if not indices:
            hint = (" (with scope='row' a ratio below 1/in_features selects nothing; raise it or use count)"
                    if scope == "row" and ratio is not None else "")
            raise EmptySelectionError(f"the selection (ratio={ratio}, count={count}, sign={sign}, scope={scope}) is empty{hint}")
        meta = {"fingerprint": self.fingerprint, "concepts": self.metadata.get("concepts"),
                "objective": self.metadata.get("objective"), "preserve": self.metadata.get("preserve"),
                "components": self.metadata.get("components"),
                "selection": {"ratio": ratio, "count": count, "sign": sign, "scope": scope}}
        shapes = {**{n: tuple(s.shape) for n, s in self.scores.items()}, **{p[0]: tuple(p[4]) for p in parts.values()}}
        return Mask(indices, {n: shapes[n] for n in indices}, meta)

    def summary(self) -> dict[str, Any]:
        """Per-layer counts and mass of positive / negative scores, how concentrated the positive mass is, and the
        positive mass of every attention head (`heads`: "<attention module>/head<h>")."""
        layers = {}
        for name, s in self.scores.items():
            pos, neg = s[s > 0], s[s < 0]
            layers[name] = {"n": s.numel(), "n_positive": int(pos.numel()), "n_negative": int(neg.numel()),
                            "mass_positive": float(pos.sum()), "mass_negative": float(-neg.sum())}
        flat = torch.cat([s.reshape(-1) for s in self.scores.values()])
        total_pos = float(flat.clamp(min=0).sum())
        concentration = {}
        for label, frac in (("top_0.1%", 0.001), ("top_1%", 0.01)):
            k = max(1, int(frac * flat.numel()))
            top = flat.topk(k).values.clamp(min=0).sum()
            concentration[label] = float(top) / total_pos if total_pos > 0 else 0.0
        heads = {f"{module}/head{h}": v for (module, h), v in
                 head_scores({n: s.clamp(min=0) for n, s in self.scores.items()}, self.metadata.get("heads") or {}).items()}
        return {"n": int(flat.numel()), "n_positive": int((flat > 0).sum()), "n_negative": int((flat < 0).sum()),
                "mass_positive": total_pos, "mass_negative": float(-flat.clamp(max=0).sum()),
                "concentration": concentration, "layers": layers, "heads": heads}

    def plot(self, path: str | Path) -> Path:
        """Bar chart of positive and negative score mass per layer (PNG)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        layers = self.summary()["layers"]
        names = [short_name(n) for n in layers]
        pos = [v["mass_positive"] for v in layers.values()]
        neg = [-v["mass_negative"] for v in layers.values()]
        fig, ax = plt.subplots(figsize=(8, 0.28 * len(names) + 1.5))
        ys = range(len(names))
        ax.barh(ys, pos, color="tab:red", label="positive mass (carries the concept)")
        ax.barh(ys, neg, color="tab:blue", label="negative mass (suppresses it)")
        ax.set_yticks(list(ys), names, fontsize=7)
        ax.invert_yaxis()
        ax.axvline(0, color="black", lw=0.5)
        ax.set_xlabel("sum of scores w * dJ/dw")
        ax.set_title(f"CAD attribution: {', '.join(self.metadata.get('concepts', []))} ({self.metadata.get('objective')})")
        ax.legend(fontsize=7, loc="lower right")
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return Path(path)

    def save(self, path: str | Path, overwrite: bool = False) -> Path:
        """Write scores as safetensors, metadata as JSON in the header."""
        return write_with_header(path, self.scores, {"kind": "attribution", **self.metadata}, overwrite)

    @classmethod
    def load(cls, path: str | Path, pipe=None) -> "Attribution":
        """Read an attribution file; with `pipe`, fail clearly if it was computed on another model."""
        tensors, info = read_header(path, "attribution")
        info.pop("kind", None)
        attr = cls({k: v.float() for k, v in tensors.items()}, info)
        if pipe is not None:
            attr.check_model(pipe)
        return attr


def short_name(name: str) -> str:
    """A compact label for a parameter name (for plots and tables)."""
    for long, short in ((".attentions.", ".attn"), (".transformer_blocks.", ".tb"), ("down_blocks.", "down"),
                        ("up_blocks.", "up"), ("mid_block", "mid"), (".weight", "")):
        name = name.replace(long, short)
    return name
