"""`anchoral label`: the human-in-the-loop driver of the same algorithm (session files, the user's
files, init/next/status, the linear head with export/apply).

May import: api, al, retrieval, training, data, models, errors, fileio.
"""
