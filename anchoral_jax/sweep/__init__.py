"""Sweeps: a config's `sweep(add, arg)` expanded into named runs, the local runner, Slurm and
multi-host scripts, a cell's seeds as one job; `anchoral sweep` in command.py.

May import: everything below the drivers (al.validation for the checks, config, run).
"""
