"""Optimization: the code of the notebooks in notebooks/optimization/.

Imports repro.core only; modules are named after the mechanism they implement.
"""
