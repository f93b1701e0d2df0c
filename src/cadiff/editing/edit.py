"""The plain edit, one entry point per verb: `erase` and `amplify` run a registered edit method (`method="cad"` by
default) with the settings given and return an EditResult; the input pipeline is left unchanged. (`cadiff.erase`
is the calibrated erase of `cadiff.calibration`, which searches CAD's settings and comes here when they are given.)

Example:
    >>> import cadiff
    >>> from cadiff.editing import erase
    >>> pipe = cadiff.load_pipeline()
    >>> result = erase(pipe, "circle", components="linear", seeds=16, ratio=0.02)    # CAD, the default method
    >>> result.pipeline.save_pretrained("no-circles")      # a plain diffusers folder; the sampling settings travel
    >>> esd = erase(pipe, "circle", method="esd", iterations=100, lr=3e-4)           # a baseline, same call
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from cadiff.attribution.concepts import check_concept_names
from cadiff.editing.copies import EDIT_INFO, edited_copy, export_pipeline, with_denoiser  # noqa: F401  (public here)
from cadiff.editing.methods import get_method, method_config
from cadiff.editing.result import EditResult
from cadiff.editing.selection import DEFAULT_RATIO  # noqa: F401  (public here)
from cadiff.files.mask import Mask


def edit(pipe, concepts: str | Sequence[str], objective: str = "erase", *, method: str = "cad",
         preserve: Sequence[str] | None = None, images: str | None = None, seed: int = 0, progress: bool = True,
         on_round: Callable[[int, Mask], None] | None = None, **config: Any) -> EditResult:
    """Edit `concepts` with `method` toward `objective`; `config` sets the method's options (see
    `cadiff.editing.methods`; an option the method does not take is an error). `preserve`: concepts to keep;
    `images`: amplify's concept images; `on_round(k, mask)`: CAD sees the mask after every round k."""
    cls = get_method(method)
    settings = method_config(method, **config)
    concepts = [concepts] if isinstance(concepts, str) else list(concepts)
    preserve = list(preserve or [])
    check_concept_names(concepts, preserve)
    instance = cls(settings)
    instance.check(concepts, objective, preserve, images)
    return instance.run(pipe, concepts, objective=objective, preserve=preserve, progress=progress, images=images,
                        seed=seed, on_round=on_round)


def erase(pipe, concepts: str | Sequence[str], *, method: str = "cad", **options: Any) -> EditResult:
    """Erase `concepts` (CAD-Erase by default: zero the top positive components of each concept's erase score);
    `method="esd" | "prune" | "magnitude"` run a baseline or the control the same way."""
    return edit(pipe, concepts, "erase", method=method, **options)


def amplify(pipe, concepts: str | Sequence[str], *, method: str = "cad", **options: Any) -> EditResult:
    """CAD-Amplify: zero the most negative components of the amplify objective (minus the denoising loss on the
    concept's images)."""
    return edit(pipe, concepts, "amplify", method=method, **options)
