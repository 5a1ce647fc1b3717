"""Retrieval (SPEC.md §4): the sentence encoder, the usearch index over pool rows, and
`anchoral embed/index` (their files go through cache.py).

May import: errors, fileio, cache, config, parallel, models, data, training.scoring (the
encoder's forward).
"""
