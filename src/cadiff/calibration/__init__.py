"""The calibrated erase: `cadiff.erase(pipe, concept)` finds its own setting by a fixed search, judged by a judge
against a goal, confirms it on seeds the search never used, and returns the edit with its certificate. It is the
edit method of CalibratedConfig, the default of `cadiff.erase`; the plain edit at settings you give is CAD's
config: `cadiff.erase(pipe, concept, CADConfig(ratio=0.02))`.

Example:
    >>> import cadiff
    >>> from cadiff.calibration import CalibratedConfig
    >>> pipe = cadiff.load_pipeline()                        # the embedded shapes model; its judge is the default
    >>> result = cadiff.erase(pipe, "circle")                # doctest: +SKIP
    >>> print(result.certificate.text())                     # doctest: +SKIP
    >>> strict = cadiff.erase(pipe, "circle", CalibratedConfig(goal_target=0.02, budget=20))   # doctest: +SKIP
"""

from cadiff.calibration.certificate import Certificate, Point
from cadiff.editing.goal import Goal
from cadiff.calibration.config import CalibratedConfig, CalibrationConfig
from cadiff.calibration.search import RATIOS, SEARCH, CalibratedEdit, CalibratedErase, calibrated_erase

__all__ = ["CalibratedConfig", "CalibratedEdit", "CalibratedErase", "CalibrationConfig", "Certificate", "Goal",
           "Point", "RATIOS", "SEARCH", "calibrated_erase"]
