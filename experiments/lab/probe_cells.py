"""The alignment probe over training seeds and held-out sets (`lab.probe`).

A *cell* is one (training seed, held-out set): one snapshot of that seed and one collection
of fit and held-out batches from it (set j: collection key j), on which `probe.run_probe`
fits every objective with the same fit keys. `aggregate` turns the cells of one snapshot
location (env, chunks) into one point of the probe's JSON, with two CIs over all cells:

  lo, hi      a hierarchical percentile bootstrap: each replicate resamples the training
              seeds, then the held-out sets within each drawn seed, then the fit keys
              within each drawn cell, all with replacement, and takes the grand mean;
  t_lo, t_hi  a Student-t interval over the (seed, set) cell means (n_cells − 1 degrees of
              freedom), which does not shrink with few seeds the way the bootstrap does.

A paired difference (MG − NLL only) is taken per (seed, set, fit key) before either CI.
"""

from typing import Any, Sequence

import numpy as np
from lab.probe_report import METRICS


def hierarchical_ci(
  values: np.ndarray, reps: int = 2000, confidence: float = 0.95, seed: int = 0
) -> dict[str, float]:
  """values [seeds, sets, keys] -> {mean, lo, hi}: the grand mean and a percentile CI from
  resampling seeds, then sets within each seed, then keys within each cell."""
  v = np.asarray(values, np.float64)
  s, j, k = v.shape
  rng = np.random.default_rng(seed)
  si = rng.integers(0, s, (reps, s))[:, :, None, None]
  ji = rng.integers(0, j, (reps, s, j))[:, :, :, None]
  ki = rng.integers(0, k, (reps, s, j, k))
  stats = v[si, ji, ki].mean(axis=(1, 2, 3))
  tail = (1.0 - confidence) / 2.0
  lo, hi = np.quantile(stats, [tail, 1.0 - tail])
  return {"mean": float(v.mean()), "lo": float(lo), "hi": float(hi)}


def cell_t_interval(values: np.ndarray, confidence: float = 0.95) -> dict[str, float]:
  """values [seeds, sets, keys] -> {t_lo, t_hi}: mean ± t·sd/√n over the n cell means."""
  from scipy import stats

  means = np.asarray(values, np.float64).mean(axis=-1).ravel()
  n = means.size
  if n < 2:
    return {"t_lo": float("nan"), "t_hi": float("nan")}
  half = stats.t.ppf(0.5 + confidence / 2, n - 1) * means.std(ddof=1) / np.sqrt(n)
  return {"t_lo": float(means.mean() - half), "t_hi": float(means.mean() + half)}


def summary(values: np.ndarray) -> dict[str, float]:
  """Both CIs of `values` [seeds, sets, keys]."""
  return {**hierarchical_ci(values), **cell_t_interval(values)}


def _grid(cells: Sequence[dict], get) -> tuple[np.ndarray, list[int], list[int]]:
  """get(cell) for every cell as an array [seeds, sets, ...] (every seed must have every
  set) -> (array, seeds, sets)."""
  seeds = sorted({c["seed"] for c in cells})
  sets = sorted({c["set"] for c in cells})
  by = {(c["seed"], c["set"]): c for c in cells}
  missing = [(s, j) for s in seeds for j in sets if (s, j) not in by]
  if missing:
    raise ValueError(f"cells {missing} are missing: every seed needs every held-out set")
  return np.array([[get(by[s, j]) for j in sets] for s in seeds], np.float64), seeds, sets


def aggregate(cells: Sequence[dict[str, Any]]) -> dict[str, Any]:
  """Cells {"seed", "set", "snapshot", "env_steps", "eval_return", "result"} (`run_probe`'s
  output) of one snapshot location -> {"floor", "start" (means over cells), "cells" (each
  cell's floor, start and per-key metrics), "objectives": {name: {label, settings, per_key
  (all cells' keys, flat), per_cell (mean per cell), mean/CIs per metric, and for an MG
  objective vs, diff (both CIs), diff_per_cell}}}."""
  first = cells[0]["result"]
  point = {
    "floor": {
      k: float(np.mean([c["result"]["floor"][k] for c in cells]))
      for k, v in first["floor"].items()
      if isinstance(v, (int, float)) and not isinstance(v, bool)
    },
    "start": {m: float(np.mean([c["result"]["start"][m] for c in cells])) for m in METRICS},
    "cells": [
      {
        **{k: c[k] for k in ("seed", "set", "snapshot", "env_steps", "eval_return")},
        "floor": c["result"]["floor"],
        "start": c["result"]["start"],
        "per_key": {n: r["per_key"] for n, r in c["result"]["objectives"].items()},
        "elapsed_s": c["result"].get("elapsed_s"),
      }
      for c in cells
    ],
    "objectives": {},
  }
  for name, row in first["objectives"].items():
    grid = {
      m: _grid(cells, lambda c: c["result"]["objectives"][name]["per_key"][m]) for m in METRICS
    }
    seeds, sets = grid["pooled"][1], grid["pooled"][2]
    out = {
      "label": row["label"],
      "settings": row["settings"],
      "per_key": {m: grid[m][0].ravel().tolist() for m in METRICS},
      "per_cell": {m: _cell_means(grid[m][0], seeds, sets) for m in METRICS},
      **{m: summary(grid[m][0]) for m in METRICS},
    }
    if "vs" in row:
      out["vs"] = row["vs"]
      base = {
        m: _grid(cells, lambda c: c["result"]["objectives"][row["vs"]]["per_key"][m])[0]
        for m in METRICS
      }
      out["diff"] = {m: summary(grid[m][0] - base[m]) for m in METRICS}
      out["diff_per_cell"] = {m: _cell_means(grid[m][0] - base[m], seeds, sets) for m in METRICS}
    point["objectives"][name] = out
  return point


def _cell_means(values: np.ndarray, seeds: list[int], sets: list[int]) -> list[dict]:
  return [
    {"seed": s, "set": j, "mean": float(values[a, b].mean())}
    for a, s in enumerate(seeds)
    for b, j in enumerate(sets)
  ]
