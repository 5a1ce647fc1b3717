"""Retrieval (SPEC.md §4): the sentence encoder, the usearch index over pool rows, and the caches
of tokens, embeddings and index files (keys, paths, formats, locks, atomic publish).

May import: errors, fileio, config, timing, parallel, models, data, and training.scoring (the
encoder's forward).
"""
