"""Normalization and signal propagation: the code of the notebooks in notebooks/normalization/.

Imports repro.core only; modules are named after the mechanism they implement.
"""
