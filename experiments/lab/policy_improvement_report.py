"""Summaries, table, figure and verdict of the policy-improvement probe
(`lab.policy_improvement`): means and 95% bootstrap CIs over fit keys × PPO keys, paired
differences to NLL only, per snapshot and pooled over training seeds.

Paired difference to `nll`: a model arm's value at (fit key f, PPO key p) minus `nll`'s at
the same (f, p), every θ⁺ measured on the same episodes and held-out batches; for the real
arm, its value at PPO key p minus `nll`'s mean over fit keys at p. Pooled over seeds: a
stratified bootstrap with each seed's paired differences as a stratum.
"""

from collections import defaultdict
from typing import Any, Sequence

import numpy as np

from mgjax import extras
from mgjax.stats import stratified_bootstrap_ci

BASE = "nll"
KEY_METRICS = ("dJ_A", "dJ_B", "surrogate_A", "surrogate_B", "kl_A")
ALIGN_METRICS = ("align_raw", "align_norm", "nll")
MG_ARMS = ("mg", "mg-full", "mg-target16-score", "mg-target16-pathwise")


def ci(strata: Sequence[Any], seed: int = 0) -> dict[str, float]:
  """Mean and 95% bootstrap CI, each array of `strata` a stratum (a training seed)."""
  mean, lo, hi = stratified_bootstrap_ci(
    [np.asarray(s, np.float64).ravel() for s in strata], statistic=np.mean, seed=seed
  )
  return {"mean": float(mean), "lo": float(lo), "hi": float(hi)}


def paired(point: dict[str, Any], arm: str, metric: str) -> np.ndarray | None:
  """arm − nll at the same keys (module docstring); None for nll itself or without it."""
  arms = point["arms"]
  if arm == BASE or BASE not in arms:
    return None
  if metric in ALIGN_METRICS:
    if "alignment" not in arms[arm]:
      return None
    return np.subtract(arms[arm]["alignment"][metric], arms[BASE]["alignment"][metric])
  x, ref = np.asarray(arms[arm]["per_key"][metric]), np.asarray(arms[BASE]["per_key"][metric])
  return x - (ref.mean(axis=0) if x.ndim == 1 else ref)


def values(point: dict[str, Any], arm: str, metric: str) -> np.ndarray | None:
  row = point["arms"][arm]
  if metric in ALIGN_METRICS:
    return np.asarray(row["alignment"][metric]) if "alignment" in row else None
  return np.asarray(row["per_key"][metric])


def group(points: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
  """Snapshots by "env steps" (the training seeds of one point together), e.g. "hopper 61k"."""
  out = defaultdict(list)
  for p in points:
    out[snapshot_name(p)].append(p)
  return dict(out)


def snapshot_name(p: dict[str, Any]) -> str:
  return f"{p['env']} {round(p['env_steps'] / 1000)}k"


def summarise(points: Sequence[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
  """{snapshot: {arm: {metric: CI of its values, "diff": {metric: CI of arm − nll}}}},
  pooled over the points (training seeds) of each snapshot."""
  out = {}
  for name, ps in group(points).items():
    rows = {}
    for arm in ps[0]["arms"]:
      row, diff = {}, {}
      for m in KEY_METRICS + ALIGN_METRICS:
        v = [values(p, arm, m) for p in ps]
        if v[0] is not None:
          row[m] = ci(v)
        d = [paired(p, arm, m) for p in ps]
        if d[0] is not None:
          diff[m] = ci(d)
      rows[arm] = {**row, "diff": diff}
    out[name] = rows
  return out


def _above(d: dict[str, Any] | None, m: str) -> bool:
  return d is not None and m in d and d[m]["lo"] > 0


def verdict(summary: dict[str, dict[str, dict[str, Any]]]) -> dict[str, Any]:
  """The issue's criteria, per MG arm: `beats` the snapshots where its paired ΔJ and
  surrogate are both above NLL only's with the CI clear of zero on set A, `replicated`
  those where set B agrees; `aligned_not_better` the snapshots where its held-out alignment
  rises (CI clear of zero) and its ΔJ does not. Positive: an arm replicated on ≥ 2 of 3
  snapshots; negative: no arm beats anywhere while alignment rises somewhere."""
  arms = {}
  for arm in MG_ARMS:
    beats, repl, aligned_flat = [], [], []
    for snap, rows in summary.items():
      d = rows.get(arm, {}).get("diff")
      if d is None:
        continue
      if _above(d, "dJ_A") and _above(d, "surrogate_A"):
        beats.append(snap)
        if _above(d, "dJ_B") and _above(d, "surrogate_B"):
          repl.append(snap)
      if _above(d, "align_raw") and not _above(d, "dJ_A"):
        aligned_flat.append(snap)
    arms[arm] = {"beats": beats, "replicated": repl, "aligned_not_better": aligned_flat}
  need = min(2, len(summary))
  positive = [a for a, r in arms.items() if len(r["replicated"]) >= need]
  any_beat = any(r["beats"] for r in arms.values())
  any_aligned = any(r["aligned_not_better"] for r in arms.values())
  outcome = "positive" if positive else "negative" if (any_aligned and not any_beat) else "neither"
  return {"outcome": outcome, "positive_arms": positive, "arms": arms}


def _fmt(s: dict[str, float] | None, digits: int = 1, sign: bool = False) -> str:
  if s is None:
    return ""
  f = f"{{:{'+' if sign else ''}.{digits}f}}"
  mark = " ↑" if sign and s["lo"] > 0 else " ↓" if sign and s["hi"] < 0 else ""
  return f"{f.format(s['mean'])} [{f.format(s['lo'])}, {f.format(s['hi'])}]{mark}"


def table(summary: dict[str, dict[str, dict[str, Any]]]) -> str:
  """Markdown: per snapshot and arm, ΔJ on set A and its paired difference to NLL only on
  sets A and B, the surrogate (×10³) likewise, the KL (×10³), the held-out alignment and
  its difference; ↑/↓ where a difference's CI is clear of zero."""
  lines = [
    "| snapshot | arm | ΔJ (A) | ΔJ − nll (A) | ΔJ − nll (B) | surrogate ×10³ (A) | "
    "surr − nll ×10³ (A) | surr − nll ×10³ (B) | KL ×10³ (A) | alignment | align − nll |",
    "|---|---|---|---|---|---|---|---|---|---|---|",
  ]
  k = lambda s: None if s is None else {n: 1e3 * v for n, v in s.items()}
  for snap, rows in summary.items():
    for arm, r in rows.items():
      d = r["diff"]
      cells = [
        _fmt(r.get("dJ_A")),
        _fmt(d.get("dJ_A"), sign=True),
        _fmt(d.get("dJ_B"), sign=True),
        _fmt(k(r.get("surrogate_A")), 2),
        _fmt(k(d.get("surrogate_A")), 2, True),
        _fmt(k(d.get("surrogate_B")), 2, True),
        _fmt(k(r.get("kl_A")), 2),
        _fmt(r.get("align_raw"), 3),
        _fmt(d.get("align_raw"), 3, True),
      ]
      lines.append(f"| {snap} | `{arm}` | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def plot(summary: dict[str, dict[str, dict[str, Any]]], path) -> None:
  """One column per snapshot; rows: the paired difference to NLL only of ΔJ, of the
  surrogate (set A filled, set B open) and of the held-out alignment, mean and 95% CI."""
  plt = extras.pyplot()

  rows = (("dJ", "ΔJ − nll"), ("surrogate", "surrogate − nll"), ("align_raw", "alignment − nll"))
  fig, axes = plt.subplots(3, len(summary), squeeze=False, figsize=(3.6 * len(summary) + 1, 8))
  for col, (snap, arms) in enumerate(summary.items()):
    names = [a for a in arms if a != BASE]
    for row, (metric, label) in enumerate(rows):
      ax = axes[row][col]
      sets = (("", "o", 0.0),) if metric == "align_raw" else (("_A", "o", -0.12), ("_B", "s", 0.12))
      for suffix, marker, dx in sets:
        for x, arm in enumerate(names):
          s = arms[arm]["diff"].get(metric + suffix)
          if s is None:
            continue
          color = "tab:green" if s["lo"] > 0 else "tab:red" if s["hi"] < 0 else "tab:blue"
          ax.errorbar(
            [x + dx],
            [s["mean"]],
            yerr=[[s["mean"] - s["lo"]], [s["hi"] - s["mean"]]],
            fmt=marker,
            color=color,
            mfc=color if suffix != "_B" else "white",
            capsize=3,
          )
      ax.axhline(0.0, color="k", lw=0.8)
      ax.set_xticks(range(len(names)))
      ax.set_xticklabels(names if row == 2 else [], rotation=60, fontsize=7)
      ax.grid(axis="y", lw=0.3)
      if col == 0:
        ax.set_ylabel(label, fontsize=8)
      if row == 0:
        ax.set_title(snap, fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
