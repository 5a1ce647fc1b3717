"""Ahead-of-time compilation for accelerators this machine does not have (issue 22):
`anchoral plan` compiles the run's hot programs for a target (a TPU topology through libtpu, or
the local CPU; gpu.py: compile-only H100s) and reads the compiler's memory and cost analyses
(README "GPUs and TPUs").

May import: everything below cli (training for the programs, sweep.runs for a sweep's runs).
"""
