"""Dynamics, PDEs and operators: the code of the notebooks in notebooks/dynamics-pde-operators/.

Imports repro.core only; modules are named after the mechanism they implement.
"""
