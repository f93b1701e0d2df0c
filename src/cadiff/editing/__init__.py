"""Editing a model where a concept lives: selection rules -> Mask, reversible ablation, one-call erase/amplify, export."""

from cadiff.editing.ablate import ablated, apply_mask
from cadiff.editing.edit import amplify, edited_copy, erase, export_pipeline, plan_edit
from cadiff.files.mask import Mask
from cadiff.files.select import select_indices

__all__ = ["Mask", "ablated", "amplify", "apply_mask", "edited_copy", "erase", "export_pipeline", "plan_edit",
           "select_indices"]
