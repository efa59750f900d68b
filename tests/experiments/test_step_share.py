"""experiments/step_share.py: the distribution of the MG step's metrics over a run's rows."""

import csv
import json
from pathlib import Path

import numpy as np
from inprocess import run_main
from paths import ROOT

SCRIPT = ROOT / "experiments" / "step_share.py"


def _cell(folder: Path, cosines):
  """A metrics.csv of 2 seeds × len(cosines) chunks of 10 env steps; mle-like NLL only."""
  folder.mkdir(parents=True)
  with open(folder / "metrics.csv", "w", newline="") as f:
    w = csv.DictWriter(f, ["seed", "env_steps", "mg_update_cos", "model_nll", "mg_grad_norm"])
    w.writeheader()
    for seed in (0, 1):
      for i, c in enumerate(cosines):
        w.writerow(dict(seed=seed, env_steps=10 * (i + 1), mg_update_cos=c, model_nll=i))
  return folder


def test_distribution_over_every_row_and_each_third(tmp_path):
  cosines = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4]
  cell = _cell(tmp_path / "mg-hopper", cosines)
  out = tmp_path / "share.json"
  proc = run_main(SCRIPT, cell, "--out", out)
  assert proc.returncode == 0, proc.stderr
  (res,) = json.loads(out.read_text())
  whole = res["all"]["mg_update_cos"]
  assert whole["n"] == 12
  np.testing.assert_allclose(whole["median"], 0.65)
  np.testing.assert_allclose(whole["p10"], np.percentile(cosines * 2, 10))
  # Thirds of 60 env steps: (0, 20], (20, 40], (40, 60].
  np.testing.assert_allclose(
    [t["mg_update_cos"]["mean"] for t in res["thirds"]], [0.85, 0.65, 0.45]
  )
  assert res["all"]["mg_grad_norm"] is None  # never logged: an empty cell, not a number
  assert "| third 3 |" in proc.stdout


def test_a_folder_without_metrics_is_one_line(tmp_path):
  proc = run_main(SCRIPT, tmp_path)
  assert proc.returncode == 2
  assert proc.stderr == f"error: cells={str(tmp_path)!r}: no metrics.csv in this folder\n"


def test_a_cell_without_rows_is_one_line(tmp_path):
  cell = _cell(tmp_path / "mg-hopper", [])
  proc = run_main(SCRIPT, cell)
  assert proc.returncode == 2
  assert proc.stderr == f"error: cells={str(cell)!r}: its metrics.csv has no rows yet\n"
