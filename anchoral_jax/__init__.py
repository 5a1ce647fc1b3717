"""anchoral-jax: AnchorAL and its baselines for pool-based active learning, in JAX/Flax.

The library entry point (anchoral_jax/api.py): `Selector` / `select` run a pool filter and a
base strategy around your own model; `anchoral run` (anchoral_jax/al/loop.py) is the simulation.
"""

__version__ = "0.1.0"
__all__ = ["Selection", "Selector", "select"]


def __getattr__(name: str):
  # Lazy: `import anchoral_jax` (the CLI's first step) stays free of JAX and usearch imports.
  if name in __all__:
    from anchoral_jax import api

    return getattr(api, name)
  raise AttributeError(f"module 'anchoral_jax' has no attribute {name!r}")
