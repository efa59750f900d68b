"""Tests for lab.probe_cells: the alignment probe's CIs over training seeds,
held-out sets and fit keys, on made-up cells."""

import sys

import pytest
from paths import ROOT

sys.path.insert(0, str(ROOT / "experiments"))
from lab import probe_cells  # noqa: E402
from lab.probe_report import METRICS  # noqa: E402


def _cells(values):
  """Cells of run_probe-shaped results, values[seed][set] = the NLL arm's per-key pooled
  alignment; the MG arm scores 0.1 more with every key."""
  cells = []
  for seed, sets in enumerate(values):
    for j, per_key in enumerate(sets):
      arm = lambda shift: {
        "label": "",
        "settings": {},
        "per_key": {m: [v + shift for v in per_key] for m in METRICS},
      }
      result = {
        "floor": {"real_pairwise": 0.1, "pooled_ceiling": 0.9},
        "start": {m: 0.0 for m in METRICS},
        "objectives": {"nll": arm(0.0), "mg": {**arm(0.1), "vs": "nll"}},
      }
      cells.append(
        {
          "seed": seed,
          "set": j,
          "snapshot": "s",
          "env_steps": 1,
          "eval_return": 0.0,
          "result": result,
        }
      )
  return cells


def test_the_ci_spans_training_seeds_and_heldout_sets():
  tight = [0.0, 0.001, -0.001]  # fit keys agree within a cell
  # Seeds apart: a CI over fit keys alone would be ±0.001, the CI over seeds is not.
  point = probe_cells.aggregate(_cells([[tight, tight], [[v + 1 for v in tight]] * 2]))
  nll = point["objectives"]["nll"]["pooled"]
  assert nll["mean"] == pytest.approx(0.5)
  assert nll["lo"] < 0.2 and nll["hi"] > 0.8
  assert nll["t_lo"] < 0.0 and nll["t_hi"] > 1.0
  # Sets apart within each seed: the CI spans the sets too.
  point = probe_cells.aggregate(_cells([[tight, [v + 1 for v in tight]]] * 2))
  nll = point["objectives"]["nll"]["pooled"]
  assert nll["lo"] < 0.3 and nll["hi"] > 0.7
  # Per-(seed, set) values, and the paired difference per key (0.1 everywhere, no spread).
  mg = point["objectives"]["mg"]
  cells = [(c["seed"], c["set"]) for c in mg["per_cell"]["pooled"]]
  assert cells == [(0, 0), (0, 1), (1, 0), (1, 1)]
  assert [c["mean"] for c in mg["diff_per_cell"]["pooled"]] == pytest.approx([0.1] * 4)
  assert mg["diff"]["pooled"]["lo"] == pytest.approx(0.1)
  assert len(point["cells"]) == 4 and len(mg["per_key"]["pooled"]) == 12
  with pytest.raises(ValueError, match="missing"):
    probe_cells.aggregate(_cells([[tight, tight], [tight]]))
