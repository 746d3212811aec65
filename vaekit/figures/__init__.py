"""Figures: image grids of samples, reconstructions, traversals and interpolations (grids.py)
and writing them, and the loss curves, as PNG files (png.py)."""
