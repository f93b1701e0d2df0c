"""Loading pipelines from local weights, fingerprints, and the one generation call everything uses."""

from cadiff.models.generate import generate
from cadiff.models.loading import (
    ModelLoadError,
    denoiser,
    describe_model,
    load_pipeline,
    model_fingerprint,
    sampling_defaults,
)

__all__ = ["ModelLoadError", "denoiser", "describe_model", "generate", "load_pipeline",
           "model_fingerprint", "sampling_defaults"]
