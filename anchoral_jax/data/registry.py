"""Name -> task builder. Builders are imported lazily so a missing optional file fails late."""

from __future__ import annotations

from collections.abc import Callable

from anchoral_jax.data.task import TextTask


def _tweets(**kw) -> TextTask:
  from anchoral_jax.data import tweets

  return tweets.build(**kw)


def _bbc_tech(**kw) -> TextTask:
  from anchoral_jax.data import bbc

  return bbc.build_tech(**kw)


def _bbc_multi(**kw) -> TextTask:
  from anchoral_jax.data import bbc

  return bbc.build_multi(**kw)


def _paper(task: str) -> Callable[..., TextTask]:
  """The paper's tasks (SPEC.md §7), from files in the manual dir (`paper.py`)."""

  def build(**kw) -> TextTask:
    from anchoral_jax.data import paper

    return paper.TASKS[task](**kw)

  build.__name__ = f"_paper_{task}"
  return build


def _user(**kw) -> TextTask:
  """Config values are flat strings/numbers: "a,b" lists, "" and 0 prevalence mean unset."""
  from anchoral_jax.data import user

  for key in ("class_names", "minority_classes"):
    if isinstance(kw.get(key), str):
      kw[key] = [x.strip() for x in kw[key].split(",") if x.strip()]
  for key in ("test_path", "uid_column"):
    if kw.get(key) == "":
      kw[key] = None
  if not kw.get("prevalence"):
    kw["prevalence"] = None
  if not kw.get("path"):
    raise ValueError("data.kwargs.path is required for data.name='user' (configs/user.py).")
  return user.build_user_task(**kw)


BUILDERS: dict[str, Callable[..., TextTask]] = {
    "tweets_iphone": _tweets,
    "bbc_tech": _bbc_tech,
    "bbc_multi": _bbc_multi,
    "agnews_business": _paper("agnews_business"),
    "wikitoxic": _paper("wikitoxic"),
    "amazoncat_agri": _paper("amazoncat_agri"),
    "amazoncat_multi": _paper("amazoncat_multi"),
    "agnews_business_raw": _paper("agnews_business_raw"),
    "amazoncat_agri_raw": _paper("amazoncat_agri_raw"),
    "amazoncat_multi_raw": _paper("amazoncat_multi_raw"),
    "user": _user,
}


def register(name: str, fn: Callable[..., TextTask]) -> None:
  BUILDERS[name] = fn


def load(name: str, **kwargs) -> TextTask:
  """Builds the task registered as `name` (the registry depends on task.py, never the
  reverse: no import cycle)."""
  if name not in BUILDERS:
    raise ValueError(f"Unknown dataset {name!r}. Known: {sorted(BUILDERS)}.")
  return BUILDERS[name](**kwargs)


load_task = load  # the name the rest of the code uses
