"""cadiff: find where a text-to-image diffusion model keeps a concept, and edit it there.

Example:
    >>> import cadiff
    >>> pipe = cadiff.load_pipeline()                                   # the embedded shapes model
    >>> attr = cadiff.attribute(pipe, "circle", preserve=["square", "star"], components="linear")
    >>> with cadiff.ablated(pipe, attr.select(ratio=0.05)):
    ...     images = cadiff.generate(pipe, ["a red circle"], seeds=[0])
"""

from cadiff._version import __version__  # noqa: E402

from cadiff.attribution import Attribution, attribute  # noqa: E402
from cadiff.editing import EditResult, Mask, ablated, amplify, apply_mask  # noqa: E402
from cadiff.calibration import erase  # noqa: E402  (calibrated by default; cadiff.editing.erase is the plain edit)
from cadiff.evaluation import PromptSet, evaluate, load_prompts  # noqa: E402
from cadiff.models import generate, load_pipeline, model_fingerprint  # noqa: E402
from cadiff.sae import ActivationStore, SAETrainConfig, TopKSAE, collect_activations, steer, train_sae  # noqa: E402

__all__ = [
    "__version__",
    # models
    "generate", "load_pipeline", "model_fingerprint",
    # CAD attribution and editing
    "Attribution", "EditResult", "Mask", "ablated", "amplify", "apply_mask", "attribute", "erase",
    # evaluation
    "PromptSet", "evaluate", "load_prompts",
    # sparse autoencoders
    "ActivationStore", "SAETrainConfig", "TopKSAE", "collect_activations", "steer", "train_sae",
]
