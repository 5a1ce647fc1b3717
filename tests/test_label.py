"""`anchoral label`: a labelling session driven end to end, with answers from held-back truth.

One session (600 BBC sentences, tech 10%, the packaged MiniLM at 32 tokens; no encoder stub)
is started once per module and walked through init, bad answers, steps, a killed step, status,
export and apply; the tests run in file order and share it.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from anchoral_jax.al import stopping
from anchoral_jax.data import bbc
from anchoral_jax.label import classifier as label_classifier
from anchoral_jax.label import command as label
from anchoral_jax.label import inputs as label_inputs
from anchoral_jax.label import workdir as label_workdir


@pytest.fixture(scope="module")
def session(tmp_path_factory):
  task = bbc.build_tech(prevalence=0.1, pool_size=600)
  root = tmp_path_factory.mktemp("label")
  ids = [f"s{u}" for u in task.train.uid]
  truth = dict(zip(ids, (task.class_names[y] for y in task.train.labels), strict=True))
  pd.DataFrame({"sid": ids, "body": task.train.text}).to_csv(root / "pool.csv", index=False)
  wd = root / "wd"
  run(["init", "--workdir", str(wd), "--data", str(root / "pool.csv"), "--text-column", "body",
       "--id-column", "sid", "--classes", "other,tech", "--minority", "tech",
       "--query-size", "20", "--max-length", "32"])
  return {"root": root, "wd": wd, "truth": truth}


def run(argv, capsys=None):
  label.main(argv)
  return capsys.readouterr().out if capsys else None


def fill(path, truth, skip=()):
  """What the human does: the label column from the truth (blank for `skip`)."""
  df = pd.read_csv(path, dtype=str, keep_default_na=False)
  df["label"] = ["" if i in skip else truth[i] for i in df["id"]]
  df.to_csv(path, index=False)
  return df


def answers(wd):
  return (wd / "answers.jsonl").read_text() if (wd / "answers.jsonl").exists() else ""


def test_init_writes_a_diverse_first_batch(session):
  wd = session["wd"]
  df = pd.read_csv(wd / "batches" / "batch_001.csv", dtype=str, keep_default_na=False)
  assert list(df.columns) == list(label_workdir.BATCH_COLUMNS)
  assert len(df) == 20 and df["id"].is_unique and (df["label"] == "").all()
  settings = json.loads((wd / "settings.json").read_text())
  assert settings["classes"] == ["other", "tech"] and settings["minority"] == ["tech"]
  emb = np.load(wd / "embeddings.npy")
  assert emb.shape[0] == 600 and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-4)
  state = json.loads((wd / "state.json").read_text())
  assert state["batches"][0]["kind"].startswith("cold start")
  assert (df["guess"] == "").all() and (df["score"] == "").all()  # no model, no hints


def test_next_on_an_unfilled_batch_records_nothing(session, capsys):
  wd = session["wd"]
  out = run(["next", "--workdir", str(wd)], capsys)
  assert "no answers yet" in out and answers(wd) == ""


def test_bad_answer_file_exits_2_and_records_nothing(session, capsys):
  wd, truth = session["wd"], session["truth"]
  path = wd / "batches" / "batch_001.csv"
  df = fill(path, truth)
  good = path.read_text()
  bad = df.copy()
  bad.loc[1, "label"] = "sport"  # unknown class
  bad.loc[3, "id"] = bad.loc[2, "id"]  # duplicate id
  bad.loc[4, "id"] = "nope"  # not asked
  bad.loc[5, "text"] = "edited text is fine"
  bad.to_csv(path, index=False)
  before = path.read_text()
  with pytest.raises(SystemExit) as e:
    run(["next", "--workdir", str(wd)])
  assert e.value.code == 2
  err = capsys.readouterr().err
  assert str(path) in err and "line 3: unknown label 'sport'" in err and "other, tech" in err
  assert "line 5:" in err and "repeats line 4" in err
  assert "line 6: id 'nope' was not asked" in err and "line 7" not in err
  assert err.count("\n") < 12 and "Traceback" not in err
  assert answers(wd) == "" and path.read_text() == before  # nothing lost, nothing written
  assert not (wd / "batches" / "batch_002.csv").exists()
  path.write_text(good)  # the user fixes the file


def test_steps_skip_resume_and_idempotence(session, capsys):
  wd, truth = session["wd"], session["truth"]
  b1 = pd.read_csv(wd / "batches" / "batch_001.csv", dtype=str, keep_default_na=False)
  skipped = b1["id"].iloc[0]
  fill(wd / "batches" / "batch_001.csv", truth, skip={skipped})
  run(["next", "--workdir", str(wd)], capsys)
  lines = [json.loads(x) for x in answers(wd).splitlines()]
  assert [r["id"] for r in lines[:-1]] == list(b1["id"]) and lines[-1]["ingested"]
  assert {r["batch"] for r in lines} == {1} and all(r["time"].endswith("+00:00") for r in lines)
  assert next(r for r in lines if r["id"] == skipped)["label"] is None
  # Re-running after a completed step appends nothing and keeps the new batch.
  b2_path = wd / "batches" / "batch_002.csv"
  b2 = b2_path.read_text()
  out = run(["next", "--workdir", str(wd)], capsys)
  assert "no answers yet" in out and len(answers(wd).splitlines()) == len(lines)
  assert b2_path.read_text() == b2
  # A killed step: batch 2 answered and recorded, then the process died before batch 3 was
  # written (simulated: state.json and the batch file as they were before the step).
  fill(b2_path, truth)
  state_before = (wd / "state.json").read_text()
  run(["next", "--workdir", str(wd)], capsys)
  b3 = (wd / "batches" / "batch_003.csv").read_text()
  (wd / "state.json").write_text(state_before)
  (wd / "batches" / "batch_003.csv").unlink()
  n_lines = len(answers(wd).splitlines())
  run(["next", "--workdir", str(wd)], capsys)
  assert (wd / "batches" / "batch_003.csv").read_text() == b3  # the same batch, again
  assert len(answers(wd).splitlines()) == n_lines  # batch 2 was not appended twice
  # Killed between state.json and the batch file: the file is re-written from the state.
  (wd / "batches" / "batch_003.csv").unlink()
  out = run(["next", "--workdir", str(wd)], capsys)
  assert "Re-wrote" in out and (wd / "batches" / "batch_003.csv").read_text() == b3
  asked = [pd.read_csv(wd / "batches" / f"batch_{n:03d}.csv", dtype=str)["id"].tolist()
           for n in (1, 2, 3)]
  flat = sum(asked, [])
  assert len(flat) == len(set(flat)) and skipped not in flat[20:]  # never proposed again
  fill(wd / "batches" / "batch_003.csv", truth)
  run(["next", "--workdir", str(wd)], capsys)
  assert (wd / "batches" / "batch_004.csv").exists()


def test_driver_picks_what_the_selector_picks(session, capsys):
  """One algorithm, two drivers: batch 5 equals `Selector.select` on the same inputs."""
  wd, truth = session["wd"], session["truth"]
  fill(wd / "batches" / "batch_004.csv", truth)
  state = json.loads((wd / "state.json").read_text())
  run(["next", "--workdir", str(wd)], capsys)
  s = label_workdir.load_settings(wd)
  pool = label_workdir.load_pool(wd)
  records, _ = label_workdir.read_answers(wd)
  rows, labels, skipped = label_workdir.labelled_rows(records, pool, s)
  assert {s.classes[k] for k in labels} == {"other", "tech"}  # past the cold start
  regime, params = label_classifier.train_head(pool.emb_NxE, rows, labels, s)
  from anchoral_jax.api import Selector
  from anchoral_jax.retrieval.index import PoolIndex

  sel = Selector(filter="anchoral", strategy="entropy", embeddings=pool.emb_NxE,
                 index=PoolIndex.load(wd / "index.usearch"), minority=(1,),
                 subpool_size=s.cap(600), strategy_seed=42, subset_seed=42, anchor_seed=42)
  if state.get("selector"):
    sel.load_state_dict(state["selector"])
  asked = pool.rows_of([i for b in state["batches"] for i in b["ids"]])
  answered = label_workdir.last_answers(records)
  audit = pool.rows_of([i for i in state["audit"]["ids"] if i not in answered])
  pick = sel.select(lambda r, keys: regime.outputs(params, "pool", r, keys), rows, labels,
                    query_size=16, exclude=np.union1d(np.union1d(skipped, asked), audit))
  b5 = pd.read_csv(wd / "batches" / "batch_005.csv", dtype=str)
  assert b5["id"].tolist()[:16] == [str(pool.ids[r]) for r in pick.rows]
  assert b5["id"].tolist()[16:] == json.loads((wd / "state.json").read_text())[
      "batches"][-1]["audit"]  # then 4 audit rows (a fifth of 20)
  assert json.loads((wd / "state.json").read_text())["batches"][-1]["kind"].startswith(
      "anchoral + entropy")
  assert set(b5["guess"]) <= {"other", "tech"}


def test_status(session, capsys):
  wd, truth = session["wd"], session["truth"]
  out = run(["status", "--workdir", str(wd)], capsys)
  records, _ = label_workdir.read_answers(wd)
  n_tech = sum(r["label"] == "tech" for r in records)
  assert f"tech {n_tech}" in out and "(1 skipped)" in out
  line = next(x for x in out.splitlines() if x.startswith("minority (tech)"))
  lo, hi = (int(v) for v in line.split("interval ")[1].split(":")[0].split("-"))
  assert f"{n_tech} found" in line and lo <= sum(v == "tech" for v in truth.values()) <= hi
  assert "(waiting for answers)" in out and out.count("\n") >= 8
  # The stopping advice: kappas of consecutive heads, one per head trained after the first.
  state = json.loads((wd / "state.json").read_text())
  heads = sum(b["kind"].startswith("anchoral") for b in state["batches"])
  stop = state["stopping"]
  assert len(stop["kappas"]) == heads - 1 >= 1 and len(stop["pred"]) == 600
  assert stopping.advice(stop["kappas"], stop["uncertainty"]) in out
  assert n_tech == sum(truth[r["id"]] == "tech" for r in records if r["label"])


def test_export_apply_round_trip(session, capsys):
  wd, root = session["wd"], session["root"]
  run(["export", "--workdir", str(wd), "--out", str(root / "model")], capsys)
  pred = pd.read_csv(root / "model" / "predictions.csv", dtype={"id": str})
  assert len(pred) == 600 and set(pred["label"]) <= {"other", "tech"}
  clf = label_classifier.load_classifier(root / "model")
  assert clf.classes == ["other", "tech"] and clf.encoder == "all-MiniLM-L6-v2"
  t = json.loads((root / "model" / "classifier.json").read_text())["threshold"]["threshold"]
  # The input's other columns are kept (one named like an output column too).
  data = pd.read_csv(root / "pool.csv", dtype=str)
  data["note"], data["predicted_label"] = "n", "mine"
  data.to_csv(root / "pool_cols.csv", index=False)
  out = run(["apply", "--model", str(root / "model"), "--data", str(root / "pool_cols.csv"),
             "--text-column", "body", "--id-column", "sid", "--out", str(root / "preds.csv")],
            capsys)
  assert f"threshold {t:.3f}" in out
  again = pd.read_csv(root / "preds.csv", dtype={"sid": str})
  assert list(again.columns) == ["sid", "body", "note", "predicted_label",
                                 "anchoral_predicted_label", "p_other", "p_tech"]
  assert again["sid"].tolist() == pred["id"].tolist() and (again["note"] == "n").all()
  assert (again["predicted_label"] == "mine").all()
  assert (again["anchoral_predicted_label"] == pred["model_label"]).mean() > 0.99
  np.testing.assert_allclose(again["p_tech"], pred["p_tech"], atol=1e-3)
  # The stored threshold is overridable: at 1.0 (almost) nothing is tech.
  data.head(20).to_csv(root / "head.csv", index=False)
  run(["apply", "--model", str(root / "model"), "--data", str(root / "head.csv"),
       "--text-column", "body", "--out", str(root / "strict.csv"), "--threshold", "1"], capsys)
  strict = pd.read_csv(root / "strict.csv")
  assert (strict["predicted_label"] == "tech").sum() <= (strict["p_tech"] >= 1).sum()
  # Not trivial: most tech sentences nobody labelled are found at the stored threshold.
  truth = session["truth"]
  model = pred[pred["source"] == "model"]
  tech = model["id"].map(truth) == "tech"
  print(f"BBC 600: unlabelled tech recall {(model['model_label'][tech] == 'tech').mean():.3f}"
        f" at threshold {t:.3f} ({tech.sum()} tech)")
  assert (model["model_label"][tech] == "tech").mean() >= 0.5


def test_anchoral_label_command(tmp_path):
  """The real entry point: `anchoral label` dispatches here; an input error is one message."""
  import subprocess
  import sys

  out = subprocess.run([sys.executable, "-m", "anchoral_jax.cli", "label", "status",
                        "--workdir", str(tmp_path / "none")], capture_output=True, text=True)
  assert out.returncode == 2 and "not a labelling session" in out.stderr
  assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_cli_errors(session, tmp_path, capsys):
  with pytest.raises(SystemExit) as e:
    run(["next", "--workdir", str(tmp_path / "none")])
  assert e.value.code == 2 and "not a labelling session" in capsys.readouterr().err
  with pytest.raises(SystemExit) as e:
    run(["init", "--workdir", str(tmp_path / "w"), "--data", str(session["root"] / "pool.csv"),
         "--text-column", "body", "--classes", "other,tech", "--minority", "sport"])
  assert e.value.code == 2 and "--minority sport" in capsys.readouterr().err
  with pytest.raises(SystemExit) as e:
    run(["init", "--workdir", str(tmp_path / "w"), "--data", str(tmp_path / "missing.csv"),
         "--classes", "a,b", "--minority", "b"])
  assert e.value.code == 2 and "missing.csv" in capsys.readouterr().err
  with pytest.raises(SystemExit) as e:
    run(["init", "--workdir", str(session["wd"]), "--data", str(session["root"] / "pool.csv"),
         "--text-column", "body", "--classes", "other,tech", "--minority", "tech"])
  assert e.value.code == 2 and "already holds" in capsys.readouterr().err


def test_seed_labels_skip_the_cold_start(session, tmp_path, capsys):
  """With seed labels of both classes, batch 1 comes from the model + AnchorAL."""
  truth, root = session["truth"], session["root"]
  wd = tmp_path / "seeded"
  tech = [i for i, v in truth.items() if v == "tech"][:3]
  other = [i for i, v in truth.items() if v == "other"][:5]
  pd.DataFrame({"id": tech + other, "label": ["tech"] * 3 + ["other"] * 5}).to_csv(
      tmp_path / "seed.csv", index=False)
  # Reuse the session's embeddings (the encoder ran once in this module): same pool, same model.
  wd.mkdir()
  for name in ("embeddings.npy", "embeddings.json"):
    shutil.copy(session["wd"] / name, wd / name)
  run(["init", "--workdir", str(wd), "--data", str(root / "pool.csv"), "--text-column", "body",
       "--id-column", "sid", "--classes", "other,tech", "--minority", "tech",
       "--seed-labels", str(tmp_path / "seed.csv"), "--query-size", "20", "--max-length", "32"],
      capsys)
  state = json.loads((wd / "state.json").read_text())
  assert state["batches"][0]["kind"].startswith("anchoral + entropy")
  b1 = pd.read_csv(wd / "batches" / "batch_001.csv", dtype=str)
  assert not set(b1["id"]) & set(tech + other)
  assert json.loads((wd / "answers.jsonl").read_text().splitlines()[-1])["batch"] == 0


def test_read_batch_answers_tolerates_a_spreadsheet(tmp_path):
  """A BOM, case, '?', edited texts and deleted rows: answers by id, deleted rows skipped."""
  path = tmp_path / "batch_007.csv"
  path.write_text("\ufeffid,text,label,guess,score\n"
                  "a,edited,TECH,other,0.5\nb,x,?,,\nc,x,,,\n", encoding="utf-8")
  got, filled = label_inputs.read_batch_answers(path, ["a", "b", "c", "d"], ["other", "tech"])
  assert got == [("a", "tech"), ("b", None), ("c", None), ("d", None)] and filled == 1
  path.write_text("id,text\na,x\n")
  with pytest.raises(label_workdir.LabelError, match=r"column\(s\) \['label'\] missing"):
    label_inputs.read_batch_answers(path, ["a"], ["other", "tech"])
