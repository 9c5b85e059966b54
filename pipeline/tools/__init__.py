"""Tools run by hand, not DVC stages: ``python -m pipeline.tools.latent`` (latent walks and arithmetic of a trained
generator) and ``python -m pipeline.tools.plots_template`` (regenerates the offline `dvc plots` page template).

This file imports nothing.
"""
