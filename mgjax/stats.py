"""Few-run statistics after Agarwal et al. 2021 (arXiv:2108.13264): the interquartile mean
and stratified-bootstrap confidence intervals, in plain numpy."""

from typing import Callable, Sequence

import numpy as np


def iqm(x: np.ndarray) -> float:
  """Interquartile mean: the mean of the middle 50% of the values, with the boundary samples
  weighted fractionally (as scipy.stats.trim_mean(x, 0.25) for n divisible by 4, and
  continuous in between): IQM = (1/(n/2)) ∫_{n/4}^{3n/4} x_(⌈u⌉) du."""
  x = np.sort(np.asarray(x, np.float64).ravel())
  n = x.size
  if n == 0:
    return float("nan")
  lo, hi = n / 4.0, 3.0 * n / 4.0
  # weight of the i-th order statistic (covering [i, i+1)) inside [lo, hi)
  edges = np.arange(n)
  w = np.clip(np.minimum(edges + 1, hi) - np.maximum(edges, lo), 0.0, 1.0)
  return float(np.sum(w * x) / np.sum(w))


def stratified_bootstrap_ci(
  scores: Sequence[np.ndarray],
  statistic: Callable[[np.ndarray], float] = iqm,
  reps: int = 2000,
  confidence: float = 0.95,
  seed: int = 0,
) -> tuple[float, float, float]:
  """Point estimate and percentile CI of statistic(concatenated scores).

  scores: one array of per-seed scores per task (stratum); each bootstrap replicate
  resamples the seeds of every task with replacement, separately, so every task keeps its
  weight.
  """
  scores = [np.asarray(s, np.float64).ravel() for s in scores]
  point = statistic(np.concatenate(scores))
  rng = np.random.default_rng(seed)
  reps_stats = np.empty(reps)
  for r in range(reps):
    reps_stats[r] = statistic(np.concatenate([s[rng.integers(0, s.size, s.size)] for s in scores]))
  tail = (1.0 - confidence) / 2.0
  lo, hi = np.quantile(reps_stats, [tail, 1.0 - tail])
  return float(point), float(lo), float(hi)


def bootstrap_difference_ci(
  a: np.ndarray,
  b: np.ndarray,
  statistic: Callable[[np.ndarray], float] = iqm,
  reps: int = 2000,
  confidence: float = 0.95,
  seed: int = 0,
) -> tuple[float, float, float]:
  """Point estimate and percentile CI of statistic(a) − statistic(b) for two independent
  groups of runs (e.g. two algorithms' seeds): each replicate resamples a's and b's values
  with replacement, separately, Δ* = statistic(a*) − statistic(b*)."""
  a, b = (np.asarray(x, np.float64).ravel() for x in (a, b))
  point = statistic(a) - statistic(b)
  rng = np.random.default_rng(seed)
  diffs = np.empty(reps)
  for r in range(reps):
    diffs[r] = statistic(a[rng.integers(0, a.size, a.size)]) - statistic(
      b[rng.integers(0, b.size, b.size)]
    )
  tail = (1.0 - confidence) / 2.0
  lo, hi = np.quantile(diffs, [tail, 1.0 - tail])
  return float(point), float(lo), float(hi)
