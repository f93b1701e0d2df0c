"""Moved: the shapes world is now `cadiff.worlds.shapes`."""

raise ImportError("cadiff.shapes is now cadiff.worlds.shapes: import from there")
