"""Representation learning: the code of the notebooks in notebooks/representation-learning/.

Imports repro.core only; modules are named after the mechanism they implement.
"""
