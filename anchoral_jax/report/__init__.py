"""`anchoral report`: finished runs grouped into cells, tables and plots.

May import: metrics, tracking, config.
"""
