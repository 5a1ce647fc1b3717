"""anchoral-jax: AnchorAL and its baselines for pool-based active learning, in JAX/Flax."""

__version__ = "0.1.0"
