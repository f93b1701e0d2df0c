"""Pictures of results: image grids, plots."""

from cadiff.report.grids import image_grid, stack_grids

__all__ = ["image_grid", "stack_grids"]
