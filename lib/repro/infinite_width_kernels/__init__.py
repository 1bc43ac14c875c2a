"""Infinite width and kernels: the code of the notebooks in notebooks/infinite-width-kernels/.

Imports repro.core only; modules are named after the mechanism they implement.
"""
