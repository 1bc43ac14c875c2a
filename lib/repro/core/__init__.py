"""What two or more themes use: setup and presets, claims, provenance, models, the training loop,
data, plots, statistics, activations, Gaussian expectations and argument checks.

Nothing here imports a theme package or the harness.
"""
