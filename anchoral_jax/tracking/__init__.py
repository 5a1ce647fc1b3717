"""Records (CONTRIBUTING.md §6): the tracker interface, the JSON-lines record of truth and the
optional W&B sink.

May import: errors, fileio, config.
"""
