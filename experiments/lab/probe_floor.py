"""The noise floor of the alignment probe (`lab.probe`): how much alignment its
held-out batches can show at all, and which of them give the target and which ĝ_M's start
states."""

import math

import jax
import jax.numpy as jnp
import numpy as np


def _flat(tree) -> jax.Array:
  return jnp.concatenate([jnp.ravel(x) for x in jax.tree.leaves(tree)])


def heldout_split(n: int, disjoint: bool = True) -> tuple[np.ndarray, np.ndarray]:
  """Indices of the n held-out batches that give the target ḡ_R and of those whose states
  start ĝ_M's rollouts: the first and the second half (disjoint; with n odd the last batch
  is left out), or all n for both (`disjoint=False`, the earlier probe's overlap)."""
  if not disjoint:
    return np.arange(n), np.arange(n)
  if n < 2:
    raise ValueError(f"heldout_batches={n}: disjoint halves need at least 2")
  half = n // 2
  return np.arange(half), np.arange(half, 2 * half)


def pooled_ceiling(split_half: float) -> float:
  """The overlapping probe's ceiling: the highest pooled alignment a noiseless ĝ_M = E[g_R]
  can score against the mean of all held-out g_R, from the split-half cosine r of two half
  means: the full mean's reliability is 2r/(1 + r) (Spearman–Brown), the cosine its root."""
  r = max(split_half, 0.0)
  return math.sqrt(2 * r / (1 + r))


def _flat_grads(batches) -> np.ndarray:
  return np.asarray(jax.vmap(_flat)(batches.real_grad), np.float64)


def _cos64(a: np.ndarray, b: np.ndarray) -> float:
  return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _pairwise(g: np.ndarray) -> float:
  unit = g / np.linalg.norm(g, axis=1, keepdims=True)
  return float((unit @ unit.T)[np.triu_indices(g.shape[0], 1)].mean())


def noise_floor(fit_data, heldout) -> dict[str, float]:
  """How much alignment the held-out data can show at all, for the overlapping probe
  (`disjoint=False`) and `sac_probe`: g_R's mean pairwise cosine over held-out batches (ρ,
  the single-batch ceiling), the split-half cosine of the pooled ḡ_R (its own reliability),
  and the cosine of the fit batches' mean g_R with ḡ_R."""
  g, g_fit = _flat_grads(heldout), _flat_grads(fit_data)
  half = g.shape[0] // 2
  split_half = _cos64(g[:half].mean(0), g[half:].mean(0))
  return {
    "real_pairwise": _pairwise(g),
    "pooled_split_half": split_half,
    "pooled_ceiling": pooled_ceiling(split_half),
    "fit_target_vs_pooled": _cos64(g_fit.mean(0), g.mean(0)),
    "fit_batch0_vs_pooled": _cos64(g_fit[0], g.mean(0)),
  }


def disjoint_floor(fit_data, heldout) -> dict[str, float]:
  """The floor of the disjoint probe: ρ over all held-out batches; the cosine of the target
  half's mean ḡ_R with the start half's mean ("pooled_split_half": two means of m batches
  each, so it estimates R, the reliability of ḡ_R itself); the pooled ceiling √R; and the
  cosine of the fit batches' mean g_R (and of the first one) with ḡ_R."""
  g, g_fit = _flat_grads(heldout), _flat_grads(fit_data)
  target_idx, start_idx = heldout_split(g.shape[0])
  target = g[target_idx].mean(0)
  split_half = _cos64(target, g[start_idx].mean(0))
  return {
    "real_pairwise": _pairwise(g),
    "pooled_split_half": split_half,
    "pooled_ceiling": math.sqrt(max(split_half, 0.0)),
    "target_batches": len(target_idx),
    "fit_target_vs_pooled": _cos64(g_fit.mean(0), target),
    "fit_batch0_vs_pooled": _cos64(g_fit[0], target),
  }
