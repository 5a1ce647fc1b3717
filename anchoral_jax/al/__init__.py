"""The AL algorithm: pool filters, base strategies, k-means++, the simulation loop and its parts.

May import: errors, fileio, config, metrics, parallel, models, data, retrieval, training,
run, tracking. Nothing above (api, label, sweep, report, cli) imports back into it.
"""
