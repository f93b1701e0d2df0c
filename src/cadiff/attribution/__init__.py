"""CAD component attribution: which weights carry a concept (scores w * dJ/dw), computed in one pass."""

from cadiff.attribution.attribute import attribute
from cadiff.attribution.config import AttributionConfig
from cadiff.attribution.components import GROUPS, select_parameters
from cadiff.attribution.concepts import Concepts, check_concept_names, check_known_words, concept_prompt, concept_prompts
from cadiff.attribution.result import Attribution

__all__ = ["GROUPS", "Attribution", "AttributionConfig", "Concepts", "attribute", "check_concept_names", "check_known_words", "concept_prompt",
           "concept_prompts", "select_parameters"]
