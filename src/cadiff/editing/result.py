"""EditResult: what every edit method returns — the edited pipeline, the mask when the method makes one, CAD's
attributions and per-round masks, the settings and timings — with `save(folder)`.

Example:
    >>> result = cadiff.erase(pipe, "circle", components="linear", seeds=16)       # doctest: +SKIP
    >>> result.mask, result.settings()["ratio"], result.seconds                    # doctest: +SKIP
    >>> result.save("runs/no-circle")          # mask, scores, edit.json and the edited pipeline/ folder  # doctest: +SKIP
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cadiff.attribution.result import Attribution
from cadiff.config import Config
from cadiff.exports import Edit, export as export_edit
from cadiff.io.files import atomic_dir, write_json
from cadiff.attribution.mask import Mask


def slug(concept: str) -> str:
    """A file-name-safe form of a concept ('a red circle' -> 'a_red_circle')."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", concept).strip("_") or "concept"


def slugs(concepts: list[str]) -> list[str]:
    """One distinct file name per concept ('a red circle', 'a red, circle' -> 'a_red_circle', 'a_red_circle_2')."""
    out: list[str] = []
    for concept in concepts:
        name, k = slug(concept), 2
        while name in out:
            name, k = f"{slug(concept)}_{k}", k + 1
        out.append(name)
    return out


@dataclass
class EditResult:
    """One edit: `pipeline` (a new pipeline; the input one is unchanged), `mask` (None for methods that train),
    `attributions` (CAD: the scores of the last round, one per concept), `rounds` (CAD: the mask after each round,
    1-based), `config` (the method's settings), `info` (what the method reports), `seconds` (edit time), `base`
    (the pipeline the edit was made from, unchanged: exports write the difference from it)."""

    pipeline: Any
    method: str
    objective: str
    concepts: list[str]
    preserve: list[str]
    config: Config
    mask: Mask | None = None
    attributions: list[Attribution] = field(default_factory=list)
    rounds: dict[int, Mask] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    base: Any = None

    def settings(self) -> dict[str, Any]:
        """Method, objective, concepts and every setting of the method's config (what run.json records)."""
        return {"method": self.method, "objective": self.objective, "concepts": list(self.concepts),
                "preserve": list(self.preserve), **self.config.to_dict()}

    def record(self) -> dict[str, Any]:
        """The settings with what the edit did: weights zeroed (per parameter), the method's report, the time."""
        out = {**self.info, **self.settings(), "seconds": round(self.seconds, 3)}
        if self.mask is not None:
            out.update(zeroed=len(self.mask), per_parameter=self.mask.counts(), model_fingerprint=self.mask.fingerprint)
        return out

    def write(self, folder: str | Path, export: bool = True) -> None:
        """Write the artefacts into the existing `folder`: mask.safetensors (and mask.roundK.safetensors for the
        earlier rounds), <concept>.attr.safetensors (.roundK when scored on an edited model) with its per-layer
        plot (.attr.png) and summary (.summary.json, per layer and per attention head), and with `export` the
        edited pipeline as pipeline/ (stock diffusers loads it)."""
        folder = Path(folder)
        last = "" if len(self.rounds) <= 1 else f".round{len(self.rounds)}"
        for name, attr in zip(slugs(self.concepts), self.attributions):
            attr.save(folder / f"{name}{last}.attr.safetensors")
            attr.plot(folder / f"{name}{last}.attr.png")
            write_json(folder / f"{name}{last}.summary.json", attr.summary())
        if self.mask is not None:
            self.mask.save(folder / "mask.safetensors")
        for k, mask in sorted(self.rounds.items())[:-1]:
            mask.save(folder / f"mask.round{k}.safetensors")
        if export:
            self.export(folder / "pipeline")

    def export(self, out: str | Path, format: str = "diffusers", overwrite: bool = False) -> Path:
        """Write the edit in `format` (`cadiff.exports.FORMATS`): the edited pipeline folder with this edit's record as
        cadiff_edit.json (diffusers, the default), a ComfyUI or A1111 patch file, a peft adapter or a single-file
        checkpoint; atomically, with the record in the file's metadata."""
        return export_edit(Edit(self.pipeline, self.base, self.record()), out, format, overwrite)

    def save(self, folder: str | Path, overwrite: bool = False, export: bool = True) -> Path:
        """A new folder with the artefacts of `write` and edit.json (the record); nothing half-written on failure."""
        with atomic_dir(folder, overwrite=overwrite) as tmp:
            self.write(tmp, export=export)
            write_json(tmp / "edit.json", self.record())
        return Path(folder)
