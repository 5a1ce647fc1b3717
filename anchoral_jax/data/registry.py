"""Name -> task builder. Builders are imported lazily so a missing optional file fails late."""

from __future__ import annotations

from collections.abc import Callable

from anchoral_jax.data.task import TextTask


def _tweets(**kw) -> TextTask:
  from anchoral_jax.data import tweets

  return tweets.build(**kw)


BUILDERS: dict[str, Callable[..., TextTask]] = {
    "tweets_iphone": _tweets,
}


def register(name: str, fn: Callable[..., TextTask]) -> None:
  BUILDERS[name] = fn


def load(name: str, **kwargs) -> TextTask:
  if name not in BUILDERS:
    raise ValueError(f"Unknown dataset {name!r}. Known: {sorted(BUILDERS)}.")
  return BUILDERS[name](**kwargs)
