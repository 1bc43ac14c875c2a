"""Generative models and diffusion: the code of the notebooks in notebooks/generative-diffusion/.

Imports repro.core only; modules are named after the mechanism they implement.
"""
