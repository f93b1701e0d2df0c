"""Moved: this module is now `cadiff.files.mask`."""

raise ImportError("cadiff.editing.mask is now cadiff.files.mask: import from there")
