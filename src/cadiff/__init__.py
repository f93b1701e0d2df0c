"""cadiff: find where a text-to-image diffusion model keeps a concept, and edit it there.

Example:
    >>> import cadiff
    >>> pipe = cadiff.load_pipeline()                                   # the embedded shapes model
    >>> attr = cadiff.attribute(pipe, "circle", cadiff.AttributionConfig(components="linear"), preserve=["square"])
    >>> with cadiff.ablated(pipe, attr.select(ratio=0.05)):
    ...     images = cadiff.generate(pipe, ["a red circle"], seeds=[0])
    >>> result = cadiff.erase(pipe, "circle")             # the calibrated erase: finds its setting, certifies it
    >>> plain = cadiff.erase(pipe, "circle", cadiff.CADConfig(ratio=0.02, components="linear"))   # as given
"""

from cadiff._version import __version__  # noqa: E402

from cadiff.attribution import Attribution, AttributionConfig, attribute  # noqa: E402
from cadiff.editing import CADConfig, EditResult, Mask, ablated, amplify, apply_mask, edit, erase  # noqa: E402
from cadiff.calibration import CalibratedConfig  # noqa: E402  (registers the calibrated erase, erase's default)
from cadiff.attacks import HardenConfig  # noqa: E402  (registers the hardening)
from cadiff.evaluation import PromptSet, evaluate, load_prompts  # noqa: E402
from cadiff.models import generate, load_pipeline, model_fingerprint  # noqa: E402
from cadiff.sae import ActivationStore, SAETrainConfig, TopKSAE, collect_activations, steer, train_sae  # noqa: E402

__all__ = [
    "__version__",
    # models
    "generate", "load_pipeline", "model_fingerprint",
    # CAD attribution and editing
    "Attribution", "AttributionConfig", "CADConfig", "CalibratedConfig", "EditResult", "HardenConfig", "Mask",
    "ablated", "amplify", "apply_mask", "attribute", "edit", "erase",
    # evaluation
    "PromptSet", "evaluate", "load_prompts",
    # sparse autoencoders
    "ActivationStore", "SAETrainConfig", "TopKSAE", "collect_activations", "steer", "train_sae",
]
