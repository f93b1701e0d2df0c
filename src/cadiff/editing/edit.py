"""One entry point for every edit: `edit(pipe, concepts, config)` runs the registered method whose config `config`
is, and returns an EditResult; the input pipeline is left unchanged. `erase` and `amplify` are its two names, each
with a default method: the calibrated erase (it finds its own setting and writes a certificate) and CAD-Amplify.

Example:
    >>> import cadiff
    >>> from cadiff.editing.methods.cad import CADConfig
    >>> from cadiff.editing.methods.esd import ESDConfig
    >>> pipe = cadiff.load_pipeline()
    >>> result = cadiff.erase(pipe, "circle")                                  # calibrated: the default  # doctest: +SKIP
    >>> plain = cadiff.erase(pipe, "circle", CADConfig(components="linear", seeds=16, ratio=0.02))
    >>> plain.pipeline.save_pretrained("no-circles")       # a plain diffusers folder; the sampling settings travel
    >>> esd = cadiff.erase(pipe, "circle", ESDConfig(iterations=100, lr=3e-4))        # a baseline, same call
    >>> again = cadiff.erase(pipe, "circle", plain.config, seeds=8)       # options override a config's fields
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from cadiff.editing.copies import edited_copy, with_denoiser  # noqa: F401  (public here)
from cadiff.exports.diffusers import EDIT_INFO, export_pipeline  # noqa: F401  (public here)
from cadiff.editing.methods import default_method, method_for
from cadiff.editing.result import EditResult
from cadiff.editing.selection import DEFAULT_RATIO  # noqa: F401  (public here)
from cadiff.config import Config
from cadiff.attribution.mask import Mask


def edit(pipe, concepts: str | Sequence[str], config: Config, *, objective: str = "erase",
         preserve: Sequence[str] | None = None, images: str | None = None, judge: Any = None,
         second_judge: Any = None, start: Mask | None = None, progress: bool = True,
         on_step: Callable[..., None] | None = None, **options: Any) -> EditResult:
    """Edit `concepts` toward `objective` with the method `config` belongs to; `options` set some of its fields
    for this call (an option the config lacks is an error). `preserve`: concepts to keep; `images`: amplify's
    concept images; `judge` / `second_judge`: what judges a method that judges its edit (the calibrated erase,
    the hardening); `start`: the erase a method grows (the hardening); `on_step`: progress events (CAD: round and
    mask; the calibrated erase: each screened Point)."""
    method = method_for(config.with_options(f"{type(config).__name__}", **options))
    inputs = method.inputs(concepts, objective, preserve=preserve, images=images, judge=judge,
                           second_judge=second_judge, start=start)
    return method.run(pipe, method.request(pipe, inputs, progress=progress, on_step=on_step))


def erase(pipe, concepts: str | Sequence[str], config: Config | None = None, **options: Any) -> EditResult:
    """Erase `concepts` with the method of `config` (default: the calibrated erase, CalibratedConfig()); the
    keywords are `edit`'s, and a config's fields (`seeds=16`)."""
    return edit(pipe, concepts, config or default_method("erase").config_class(), objective="erase", **options)


def amplify(pipe, concepts: str | Sequence[str], config: Config | None = None, **options: Any) -> EditResult:
    """CAD-Amplify by default (CADConfig()): zero the most negative components of the amplify objective (minus
    the denoising loss on the concept's images)."""
    return edit(pipe, concepts, config or default_method("amplify").config_class(), objective="amplify", **options)
