"""Editing a model where a concept lives: reversible ablation, registered edit methods (CAD, CAD-Train, ESD, prune,
the magnitude control) behind `erase` / `amplify`, each returning an EditResult (which exports itself)."""

from cadiff.editing.ablate import ablated, apply_mask
from cadiff.editing.copies import edited_copy, with_denoiser
from cadiff.exports.diffusers import export_pipeline
from cadiff.editing.edit import amplify, edit, erase
from cadiff.editing.methods import (METHODS, EditMethod, EditRequest, get_method, method_config, method_for,
                                    methods_for, register_method)
from cadiff.editing.methods.cad import CADConfig
from cadiff.editing.result import EditResult
from cadiff.attribution.mask import Mask
from cadiff.attribution.selection import select_indices

__all__ = ["CADConfig", "METHODS", "EditMethod", "EditRequest", "EditResult", "Mask", "ablated", "amplify", "apply_mask", "edit", "edited_copy",
           "erase", "export_pipeline", "get_method", "method_config", "method_for", "methods_for", "register_method",
           "select_indices", "with_denoiser"]
