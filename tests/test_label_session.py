"""A simulated labelling session on a pool whose truth is known (issue 26's "done when").

The pool is synthetic so the test is cheap (no encoder: the session's embeddings are written
before `init`, which reuses them): 2,000 unit vectors in 32 dimensions, 28 minority (1.4%, the
BBC walk's prevalence). The majority is four tight clusters; the minority is a sparse cluster
leaning towards the majority's, so (as tech sentences on BBC) a minority row's nearest
neighbours are mostly majority rows and less similar to it than a majority row's are.
Warm start: 3 minority + 7 majority seed labels, answers from the truth.
"""

from __future__ import annotations

import hashlib
import json
import math

import numpy as np
import pandas as pd
import pytest

from anchoral_jax.label import classifier as label_classifier
from anchoral_jax.label import command as label
from anchoral_jax.label import estimate as label_estimate
from anchoral_jax.label import steps as label_steps
from anchoral_jax.label import workdir as label_workdir

N, N_MIN, E = 2000, 28, 32


def synth(n: int, n_min: int, rows_seed: int, centres_seed: int = 0):
  """(emb_NxE unit-norm float32, y_N): module docstring."""
  c_5xE = np.random.default_rng(centres_seed).standard_normal((5, E))
  c_5xE /= np.linalg.norm(c_5xE, axis=1, keepdims=True)
  rng = np.random.default_rng(rows_seed)
  y_N = np.zeros(n, np.int64)
  y_N[rng.choice(n, n_min, replace=False)] = 1
  cluster_N = np.where(y_N == 1, 4, rng.integers(0, 4, n))
  spread_N = np.where(y_N == 1, 1.3, 0.9)[:, None]
  x_NxE = c_5xE[cluster_N] + spread_N * rng.standard_normal((n, E)) / np.sqrt(E)
  x_NxE[y_N == 1] += 0.6 * c_5xE[rng.integers(0, 4, n_min)]
  x_NxE /= np.linalg.norm(x_NxE, axis=1, keepdims=True)
  return x_NxE.astype(np.float32), y_N


def run(argv, capsys):
  label.main(argv)
  return capsys.readouterr().out


def fill(path, truth):
  df = pd.read_csv(path, dtype=str, keep_default_na=False)
  df["label"] = [truth[i] for i in df["id"]]
  df.to_csv(path, index=False)
  return df


@pytest.fixture(scope="module")
def session(tmp_path_factory):
  """Init with the warm-start seeds and the default audit (50 rows, 5 per batch)."""
  emb_NxE, y_N = synth(N, N_MIN, rows_seed=1)
  root = tmp_path_factory.mktemp("session")
  ids = [f"r{i}" for i in range(N)]
  texts = [f"row {i}" for i in range(N)]
  truth = {i: ("tech" if v else "other") for i, v in zip(ids, y_N, strict=True)}
  pd.DataFrame({"id": ids, "text": texts}).to_csv(root / "pool.csv", index=False)
  wd = root / "wd"
  wd.mkdir()
  np.save(wd / "embeddings.npy", emb_NxE)
  (wd / "embeddings.json").write_text(json.dumps({
      "model": "all-MiniLM-L6-v2", "max_length": 64, "n": N,
      "texts_sha1": hashlib.sha1("\0".join(texts).encode()).hexdigest()}))
  rng = np.random.default_rng(0)
  seed_rows = np.r_[rng.choice(np.flatnonzero(y_N == 1), 3, replace=False),
                    rng.choice(np.flatnonzero(y_N == 0), 7, replace=False)]
  pd.DataFrame({"id": [ids[r] for r in seed_rows], "label": ["tech"] * 3 + ["other"] * 7}
               ).to_csv(root / "seed.csv", index=False)
  label.main(["init", "--workdir", str(wd), "--data", str(root / "pool.csv"), "--id-column",
              "id", "--classes", "other,tech", "--minority", "tech", "--seed-labels",
              str(root / "seed.csv")])
  return {"root": root, "wd": wd, "truth": truth, "y": y_N, "emb": emb_NxE,
          "seed_ids": {ids[r] for r in seed_rows}}


def test_old_cap_left_no_minority_in_the_subpool(session):
  """The 0-in-200 warm start, reproduced: with 3 minority seeds, a cap below what the anchors
  retrieve (220 = 10,000 scaled to 2,000 rows, the old default) keeps the dense majority
  anchors' neighbours and none of the minority; the default cap keeps several."""
  wd, y_N = session["wd"], session["y"]
  s = label_workdir.load_settings(wd)
  pool = label_workdir.load_pool(wd)
  records, _ = label_workdir.read_answers(wd)
  rows, labels, _ = label_workdir.labelled_rows(records, pool, s)
  assert labels.sum() == 3 and len(labels) == 10
  regime, params = label_classifier.train_head(pool.emb_NxE, rows, labels, s)
  assert s.cap(N) == 10 * 2 * 50  # every neighbour the anchors retrieve (was 220)
  found = {}
  for cap in (220, s.cap(N)):
    s.subpool_size = cap
    sel = label_steps.make_selector(s, pool, wd)
    pick = sel.select(lambda r, keys: regime.outputs(params, "pool", r, keys), rows, labels,
                      query_size=20)
    found[cap] = int(y_N[pick.subpool].sum())
  assert found[220] == 0 and found[s.cap(N)] >= 8, found


def test_warm_start_finds_the_minority(session, capsys):
  """Four batches of 25 (20 chosen + 5 audit each) after the seeds: the chosen rows hold
  minority rows at many times the pool's rate (1.4%: about 1.1 in 80 at random)."""
  wd, truth = session["wd"], session["truth"]
  state = json.loads((wd / "state.json").read_text())
  assert state["batches"][0]["kind"].startswith("anchoral + entropy")
  chosen = 0
  for n in range(1, 5):
    fill(wd / "batches" / f"batch_{n:03d}.csv", truth)
    run(["next", "--workdir", str(wd)], capsys)
    rec = json.loads((wd / "state.json").read_text())["batches"][n - 1]
    assert len(rec["ids"]) == 25 and len(rec["audit"]) == 5 and rec["ids"][-5:] == rec["audit"]
    chosen += sum(truth[i] == "tech" for i in rec["ids"][:20])
  assert chosen >= 5, chosen
  state = json.loads((wd / "state.json").read_text())
  audit = state["audit"]["ids"]
  assert len(audit) == 50 and state["audit"]["served"] >= 25
  # The Selector never proposed an audit row; audit rows are served in their random order.
  picked = [i for b in state["batches"] for i in b["ids"] if i not in b["audit"]]
  assert not set(picked) & set(audit)
  served = [i for b in state["batches"] for i in b["audit"]]
  assert served == [i for i in audit[:len(served) + 5] if i not in session["seed_ids"]][
      :len(served)]


def test_status_interval_covers_the_truth(session, capsys):
  out = run(["status", "--workdir", str(session["wd"])], capsys)
  records, _ = label_workdir.read_answers(session["wd"])
  found = sum(r["label"] == "tech" for r in records)
  line = next(x for x in out.splitlines() if x.startswith("minority (tech)"))
  lo, hi = (int(v) for v in line.split("interval ")[1].split(":")[0].split("-"))
  assert f"{found} found" in line and lo <= N_MIN <= hi and lo >= found
  assert "all are found" not in line and "still unfound" in line


def test_correction_applied_then_refused(session, capsys):
  """An answer edited in a recorded batch file is recorded as a correction (history kept); a
  bad edit is refused with its line, exit 2, nothing recorded."""
  wd, truth = session["wd"], session["truth"]
  path = wd / "batches" / "batch_002.csv"
  df = pd.read_csv(path, dtype=str, keep_default_na=False)
  i = df["id"].iloc[0]
  old = df.loc[0, "label"]
  new = "tech" if old == "other" else "other"
  df.loc[0, "label"] = new
  df.to_csv(path, index=False)
  before = (wd / "answers.jsonl").read_text()
  out = run(["next", "--workdir", str(wd)], capsys)  # batch 5 is unanswered: nothing else
  assert f"batch 2, id {i}: {old} -> {new}" in out and "no answers yet" in out
  lines = (wd / "answers.jsonl").read_text()
  assert lines.startswith(before)
  history = [json.loads(x) for x in lines.splitlines() if f'"{i}"' in x]
  assert [h["label"] for h in history] == [old, new] and history[-1]["correction"] == 1
  records, _ = label_workdir.read_answers(wd)
  assert label_workdir.last_answers(records)[i] == new
  assert run(["next", "--workdir", str(wd)], capsys).startswith("Nothing to do")  # once only
  assert (wd / "answers.jsonl").read_text() == lines
  df.loc[0, "label"] = truth[i]  # back to the truth, with a typo in another row
  df.loc[1, "label"] = "tehc"
  df.to_csv(path, index=False)
  with pytest.raises(SystemExit) as e:
    label.main(["next", "--workdir", str(wd)])
  err = capsys.readouterr().err
  assert e.value.code == 2 and "line 3: unknown label 'tehc'" in err and str(path) in err
  assert (wd / "answers.jsonl").read_text() == lines  # refused: nothing recorded
  df.loc[1, "label"] = truth[df["id"].iloc[1]]
  df.to_csv(path, index=False)
  out = run(["next", "--workdir", str(wd)], capsys)
  assert f"{new} -> {truth[i]}" in out
  assert "corrections: 2 answer(s) changed in 2 step(s)" in run(
      ["status", "--workdir", str(wd)], capsys)


def test_export_gold_labels_and_threshold(session, capsys):
  wd, root, truth = session["wd"], session["root"], session["truth"]
  fill(wd / "batches" / "batch_005.csv", truth)
  run(["next", "--workdir", str(wd)], capsys)
  out = run(["export", "--workdir", str(wd), "--out", str(root / "model")], capsys)
  assert "minority threshold" in out
  records, _ = label_workdir.read_answers(wd)
  human = {k: v for k, v in label_workdir.last_answers(records).items() if v is not None}
  gold = pd.read_csv(root / "model" / "labels.csv", dtype=str)
  assert list(gold.columns) == ["id", "text", "label", "batch", "time", "source"]
  assert dict(zip(gold["id"], gold["label"], strict=True)) == human and gold["id"].is_unique
  assert all(truth[i] == v for i, v in human.items())  # the simulated human is the truth
  assert set(gold["source"]) == {"seed", "audit", "selected"}
  assert (gold["batch"][gold["source"] == "seed"] == "0").all()
  pred = pd.read_csv(root / "model" / "predictions.csv", dtype={"id": str})
  assert len(pred) == N and set(pred["source"]) == {"human", "model"}
  hp = pred[pred["source"] == "human"]
  assert dict(zip(hp["id"], hp["label"], strict=True)) == human
  mp = pred[pred["source"] == "model"]
  assert (mp["label"] == mp["model_label"]).all()
  np.testing.assert_allclose(pred["p_other"] + pred["p_tech"], 1, atol=1e-5)
  meta = json.loads((root / "model" / "classifier.json").read_text())
  t = meta["threshold"]["threshold"]
  assert 0 < t < 1 and meta["threshold"]["folds"] == 5
  assert (mp["model_label"] == np.where(mp["p_tech"] >= t - 1e-6, "tech", "other")).all()
  # "apply" on new data from the same source (the head on its features, at the stored
  # threshold): most of the minority found.
  clf = label_classifier.load_classifier(root / "model")
  new_NxE, new_N = synth(4000, 40, rows_seed=7)
  p_NxC = label_classifier.probs_of(clf.params, new_NxE)
  pred_N = label_classifier.decide(p_NxC, (1,), t)
  recall = (pred_N[new_N == 1] == 1).mean()
  precision = (new_N[pred_N == 1] == 1).mean()
  print(f"new data: recall {recall:.3f}, precision {precision:.3f} at threshold {t:.3f}")
  assert recall >= 0.6 and precision >= 0.2, (recall, precision, t)  # prevalence 1%


def test_threshold_curve_matches_sklearn():
  from sklearn.metrics import precision_recall_curve

  rng = np.random.default_rng(3)
  y = rng.random(300) < 0.2
  score = np.round(rng.random(300) * 0.6 + 0.4 * y, 2)  # ties on purpose
  t, precision, recall, _ = label_classifier.threshold_curve(score, y)
  p_ref, r_ref, t_ref = precision_recall_curve(y, score)
  ref = dict(zip(t_ref, zip(p_ref[:-1], r_ref[:-1], strict=True), strict=True))
  for ti, pi, ri in zip(t, precision, recall, strict=True):
    np.testing.assert_allclose((pi, ri), ref[ti])


def test_hypergeom_interval_brute_force():
  """The exact interval against a direct sum of hypergeometric probabilities (math.comb)."""
  n_pool, a = 60, 12
  for k in (0, 1, 3, 12):
    keep = []
    for t in range(n_pool + 1):
      pmf = [math.comb(t, j) * math.comb(n_pool - t, a - j) / math.comb(n_pool, a)
             for j in range(a + 1)]
      if sum(pmf[k:]) > 0.025 and sum(pmf[:k + 1]) > 0.025:
        keep.append(t)
    assert label_estimate.hypergeom_interval(n_pool, a, k) == (min(keep), max(keep))


def test_estimate_coverage_in_repeated_simulation():
  """2,000 simulated sessions (pool 2,000, truth 28; audits of 50 and 200 random rows; found
  anywhere from the audit's to all): the interval covers the truth at least at its 95% (exact
  intervals are conservative), is not vacuous, and says "all found" wrongly only when it
  misses."""
  rng = np.random.default_rng(0)
  truth = 28
  for a in (50, 200):
    cover = wide = false_all = 0
    for _ in range(2000):
      k = rng.hypergeometric(truth, N - truth, a)  # minority rows in the audit
      found = int(rng.integers(k, truth + 1))  # every audit minority row is found
      est = label_estimate.estimate(N, [True] * k + [False] * (a - k), found, 300)
      cover += est.low <= truth <= est.high
      wide += est.high - est.low
      false_all += est.all_found and found < truth
    assert 0.95 <= cover / 2000 <= 1.0, (a, cover)
    assert false_all / 2000 <= 1 - cover / 2000, (a, false_all)
    assert wide / 2000 < (200 if a == 50 else 80), (a, wide / 2000)
