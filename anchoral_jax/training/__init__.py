"""Training (SPEC.md §5): one run's fit, a cell's seeds vmapped, the regimes (full fine-tuning,
frozen encoder + heads) and pool scoring.

May import: errors, fileio, config, metrics, parallel, models, data, cache.
"""
