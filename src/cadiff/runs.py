"""Moved: this module is now `cadiff.files.runs`."""

raise ImportError("cadiff.runs is now cadiff.files.runs: import from there")
