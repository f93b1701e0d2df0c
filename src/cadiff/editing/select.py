"""Moved: this module is now `cadiff.files.select`."""

raise ImportError("cadiff.editing.select is now cadiff.files.select: import from there")
