"""Moved: this module is now `cadiff.files.io`."""

raise ImportError("cadiff.io is now cadiff.files.io: import from there")
