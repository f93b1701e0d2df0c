"""The calibrated erase: `cadiff.erase(pipe, concept)` finds its own setting by a fixed search, judged by a judge
against a goal, confirms it on seeds the search never used, and returns the edit with its certificate.

The plain edit stays one argument away: `calibrate=False` (or settings the search would choose, such as `ratio=`)
runs CAD (or `method=` a baseline) with the settings given, as `cadiff.editing.erase` does.

Example:
    >>> import cadiff
    >>> pipe = cadiff.load_pipeline()                        # the embedded shapes model; its judge is the default
    >>> result = cadiff.erase(pipe, "circle")                # doctest: +SKIP
    >>> print(result.certificate.text())                     # doctest: +SKIP
    >>> plain = cadiff.erase(pipe, "circle", ratio=0.02, components="linear", seeds=16)   # no search  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from cadiff.calibration.certificate import Certificate, Goal, Point
from cadiff.calibration.config import CalibrationConfig
from cadiff.calibration.search import RATIOS, SEARCH, SEARCHED, CalibratedEdit, calibrated_erase
from cadiff.editing import edit
from cadiff.editing.result import EditResult
from cadiff.errors import BadInput

__all__ = ["CalibratedEdit", "CalibrationConfig", "Certificate", "Goal", "Point", "RATIOS", "SEARCH",
           "calibrated_erase", "erase", "wants_calibration"]


def wants_calibration(method: str, calibrate: bool | None, options: dict[str, Any],
                      spell: Callable[[str], str] = str) -> bool:
    """Whether an erase is calibrated: `calibrate` if given (True only for CAD, and not with a setting the search
    chooses), else CAD with none of those settings given. ValueError for a contradiction, naming the options as
    `spell` writes them (the CLI: as flags)."""
    fixed = [spell(k) for k in SEARCHED if k in options]
    goal = [spell(k) for k in CalibrationConfig.names() if k in options]
    if calibrate is None:
        calibrate = method == "cad" and not fixed
    if calibrate and method != "cad":
        raise BadInput(f"the calibrated erase searches CAD's settings; --method {method} runs as given "
                       "(drop --calibrate)")
    if calibrate and fixed:
        raise BadInput(f"{', '.join(fixed)}: set by the calibrated erase's search; drop them, or pass "
                       "calibrate=False (--no-calibrate) to run the edit with the settings given")
    if not calibrate and goal:
        raise BadInput(f"{', '.join(goal)}: options of the calibrated erase, which this call does not run "
                       "(it is a plain edit: settings given, --no-calibrate, or another --method)")
    return calibrate


def erase(pipe, concepts: str | Sequence[str], *, method: str = "cad", calibrate: bool | None = None,
          judge: Any = None, second_judge: Any = None, preserve: Sequence[str] | None = None,
          on_point: Callable[[Point], None] | None = None, **options: Any) -> EditResult:
    """Erase `concepts`: calibrated by default (see the module; `judge`, `second_judge`, `preserve` and the
    CalibrationConfig's options apply), or the plain edit of `method` with `options` as its settings."""
    if wants_calibration(method, calibrate, options):
        return calibrated_erase(pipe, concepts, preserve=preserve, judge=judge, second_judge=second_judge,
                                on_point=on_point, **options)
    if judge is not None or second_judge is not None:
        raise BadInput("judge= and second_judge= serve the calibrated erase; a plain edit is not judged")
    return edit(pipe, concepts, "erase", method=method, preserve=preserve, **options)
