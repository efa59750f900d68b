"""experiments/compare_cells.py: cells against a reference, at env steps and over whole runs."""

import csv
from pathlib import Path

from inprocess import run_main
from paths import ROOT

SCRIPT = ROOT / "experiments" / "compare_cells.py"


def _cell(folder: Path, returns_per_seed):
  folder.mkdir(parents=True)
  with open(folder / "metrics.csv", "w", newline="") as f:
    w = csv.DictWriter(f, ["seed", "env_steps", "eval_return"])
    w.writeheader()
    for seed, returns in enumerate(returns_per_seed):
      for i, r in enumerate(returns):
        w.writerow(dict(seed=seed, env_steps=1000 * (i + 1), eval_return=r))
  return folder


def test_returns_and_differences(tmp_path):
  ref = _cell(tmp_path / "a" / "mle-hopper", [[0, 10], [0, 10], [0, 10], [0, 10]])
  cell = _cell(tmp_path / "b" / "mg-hopper", [[10, 30], [10, 30], [10, 30], [10, 30]])
  proc = run_main(SCRIPT, ref, cell, "--at", 1900)
  assert proc.returncode == 0, proc.stderr
  lines = proc.stdout.splitlines()
  assert lines[0] == "| cell | 1,900 | whole run |"
  # Every seed alike: the intervals are points. At 1,900 the nearest evaluation is 2,000.
  assert lines[2] == f"| {ref} | 10 [10, 10] | 5 [5, 5] |"
  assert lines[3] == f"| {cell} | 30 [30, 30] | 20 [20, 20] |"
  assert lines[4] == "| b/mg-hopper − a/mle-hopper | +20 [+20, +20] | +15 [+15, +15] |"


def test_a_folder_without_metrics_is_one_line(tmp_path):
  ref = _cell(tmp_path / "mle-hopper", [[1.0]])
  proc = run_main(SCRIPT, ref, tmp_path / "missing")
  assert proc.returncode == 2
  assert (
    proc.stderr == f"error: cells={str(tmp_path / 'missing')!r}: no metrics.csv in this folder\n"
  )


def test_any_metric_column(tmp_path):
  ref = _cell(tmp_path / "mle-hopper", [[0, 10]])
  cell = _cell(tmp_path / "mg-hopper", [[10, 30]])
  proc = run_main(SCRIPT, ref, cell, "--metric", "eval_return", "--digits", "1", "--at", 2000)
  assert proc.returncode == 0, proc.stderr
  assert proc.stdout.splitlines()[-1].endswith("| +20.0 [+20.0, +20.0] | +15.0 [+15.0, +15.0] |")
  proc = run_main(SCRIPT, ref, cell, "--metric", "model_nll")
  assert proc.returncode == 2
  assert proc.stderr == f"error: metric='model_nll': no value of it in {str(ref)!r}\n"
