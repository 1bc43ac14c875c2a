"""Normalizing flows: the code of the notebooks in notebooks/normalizing-flows/.

Imports repro.core only; modules are named after the mechanism they implement.
"""
