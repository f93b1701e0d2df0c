"""The bottom layer: files that appear whole or not at all, run folders, and the safetensors-plus-JSON-header format
of masks and scores (every other package builds on these; they import no other part of cadiff)."""

from cadiff.files.io import OutputExistsError, OutputPathError, atomic_dir, atomic_file, check_new, write_json
from cadiff.files.mask import Mask, read_header, write_with_header
from cadiff.files.runs import Run, run_folder, versions
from cadiff.files.select import SCOPES, SIGNS, check_amount, select_indices

__all__ = ["SCOPES", "SIGNS", "Mask", "OutputExistsError", "OutputPathError", "Run", "atomic_dir", "atomic_file",
           "check_amount", "check_new", "read_header", "run_folder", "select_indices", "versions", "write_json",
           "write_with_header"]
