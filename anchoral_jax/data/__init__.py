"""Data layer: AL tasks (pool + test split) with stable integer uids."""

from anchoral_jax.data.registry import load_task
from anchoral_jax.data.sampling import downsample_minority
from anchoral_jax.data.task import TextTask

__all__ = ["TextTask", "downsample_minority", "load_task"]
