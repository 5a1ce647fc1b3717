"""A run's workdir: layout, lock, data fingerprint, provenance, orbax checkpoints and the run's
files (hparams, JSONL logs cut back on resume, labelled set, DONE).

May import: errors, fileio, config, parallel, tracking.
"""
