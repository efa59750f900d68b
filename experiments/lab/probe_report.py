"""The comparison of model objectives in the alignment probes (`compare`), and its tables
and figures (`lab.probe`, `sac_probe`).

A probe's JSON is a list of points, one per snapshot (or per snapshot location, over
training seeds and held-out sets: `lab.probe_cells.aggregate`), each with
"floor" (its "pooled_ceiling": what a noiseless ĝ_M could score), "start" (the snapshot's
own model) and "objectives": per objective, each metric's mean and 95% CI, and for an MG
objective "diff", its paired difference to NLL only. Points made over several (seed, set)
cells give each difference a second, Student-t interval over the cell means ("t_lo",
"t_hi") and per-cell values ("per_cell"); there an MG objective counts as better or worse
only where both intervals are clear of zero.
"""

import math
from typing import Any, Sequence

import jax
import numpy as np

from mgjax.stats import stratified_bootstrap_ci

METRICS = ("pooled", "single", "nll")


def clear_of_zero(d: dict[str, float]) -> int:
  """+1 where an interval (lo, hi, and t_lo, t_hi where present) lies above zero, −1 where
  below, 0 otherwise."""
  lows = [d["lo"]] + ([d["t_lo"]] if "t_lo" in d else [])
  highs = [d["hi"]] + ([d["t_hi"]] if "t_hi" in d else [])
  return 1 if min(lows) > 0 else -1 if max(highs) < 0 else 0


def separated(row: dict[str, Any], metric: str = "pooled") -> bool:
  """Whether an objective's paired difference to NLL only has a CI above zero."""
  return "diff" in row and clear_of_zero(row["diff"][metric]) > 0


def _verdict(row: dict[str, Any], metric: str) -> int:
  """+1 where an MG objective's paired difference to NLL only is better with its CI clear of
  zero (higher alignment, lower NLL), −1 where worse, 0 otherwise or without a pair."""
  if "diff" not in row:
    return 0
  return clear_of_zero(row["diff"][metric]) * (-1 if metric == "nll" else 1)


def ceiling(point: dict[str, Any]) -> float:
  """The point's pooled ceiling (older JSONs: from the split-half cosine, Spearman–Brown)."""
  floor = point["floor"]
  if "pooled_ceiling" in floor:
    return floor["pooled_ceiling"]
  r = max(floor["pooled_split_half"], 0.0)
  return math.sqrt(2 * r / (1 + r))


def plot_probe(points: Sequence[dict[str, Any]], path) -> None:
  """One column per snapshot: the pooled alignment (top), the single-batch alignment
  (middle) and the held-out NLL (bottom) of every objective, mean and 95% CI; dashed, the
  snapshot's own model; dotted, the pooled ceiling. Green: better than NLL only with the
  paired CI clear of zero; red: worse; grey: NLL only."""
  from mgjax import extras

  plt = extras.pyplot()

  width = max(len(p["objectives"]) for p in points)
  fig, axes = plt.subplots(
    len(METRICS), len(points), squeeze=False, figsize=(0.4 * width * len(points) + 2, 8)
  )
  labels = {
    "pooled": "pooled cos(ĝ_M, ḡ_R)",
    "single": "single-batch cos(ĝ_M, g_R)",
    "nll": "held-out NLL",
  }
  for col, p in enumerate(points):
    names = list(p["objectives"])
    for row, metric in enumerate(METRICS):
      ax = axes[row][col]
      for x, name in enumerate(names):
        r = p["objectives"][name]
        s = r[metric]
        color = (
          "tab:grey"
          if not r["settings"]["mg"]
          else {1: "tab:green", -1: "tab:red", 0: "tab:blue"}[_verdict(r, metric)]
        )
        ax.errorbar(
          [x],
          [s["mean"]],
          yerr=[[s["mean"] - s["lo"]], [s["hi"] - s["mean"]]],
          fmt="o",
          color=color,
          capsize=3,
        )
      ax.axhline(p["start"][metric], color="k", ls="--", lw=0.8)
      if metric == "pooled":  # what a noiseless ĝ_M could score against these batches
        ax.axhline(ceiling(p), color="k", ls=":", lw=0.8)
      if metric == "nll":  # MG-only fits reach hundreds of nats
        ax.set_yscale("symlog", linthresh=1.0)
      ax.set_xticks(range(len(names)))
      ax.set_xticklabels(names if row == len(METRICS) - 1 else [], rotation=70, fontsize=7)
      ax.grid(axis="y", lw=0.3)
      if col == 0:
        ax.set_ylabel(labels[metric], fontsize=8)
      if row == 0:
        cells = f", {len(p['cells'])} cells" if "cells" in p else ""
        ax.set_title(f"{p['env']} {p['algo']} at {p['env_steps'] // 1000}k{cells}", fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def _fmt_diff(d: dict[str, float]) -> str:
  mark = {1: " ↑", -1: " ↓", 0: ""}[clear_of_zero(d)]
  t = f" t [{d['t_lo']:+.3f}, {d['t_hi']:+.3f}]" if "t_lo" in d else ""
  return f"{d['mean']:+.3f} [{d['lo']:+.3f}, {d['hi']:+.3f}]{t}{mark}"


def _per_cell(row: dict[str, Any], metric: str) -> str:
  cells = row.get("diff_per_cell", {}).get(metric)
  if not cells:
    return ""
  return " ".join(f"s{c['seed']}/{c['set']}: {c['mean']:+.3f}" for c in cells)


def probe_table(points: Sequence[dict[str, Any]]) -> str:
  """A Markdown table: per snapshot and objective, the pooled and single-batch alignment and
  the held-out NLL (mean [95% CI]), and the paired difference of the pooled and single
  alignment to NLL only, marked ↑/↓ where its CI is clear of zero (both CIs, where the point
  spans several (seed, set) cells; then a last column gives the pooled difference per cell,
  s<training seed>/<held-out set>)."""
  fmt = lambda s: f"{s['mean']:.3f} [{s['lo']:.3f}, {s['hi']:.3f}]"
  cells = any("cells" in p for p in points)
  head = "| snapshot | objective | pooled | single | held-out NLL | pooled − NLL only | "
  head += "single − NLL only |" + (" pooled − NLL only per (seed, set) |" if cells else "")
  lines = [head, "|---|---|---|---|---|---|---|" + ("---|" if cells else "")]
  pad = " |" if cells else ""
  for p in points:
    where = f"{p['env']} {p['env_steps'] // 1000}k"
    start, floor = p["start"], p["floor"]
    lines.append(
      f"| {where} | ceiling (noiseless ĝ_M) | {ceiling(p):.3f} | "
      f"√ρ = {math.sqrt(max(floor['real_pairwise'], 0)):.3f} | | | |{pad}"
    )
    lines.append(
      f"| {where} | the snapshot's model | {start['pooled']:.3f} | "
      f"{start['single']:.3f} | {start['nll']:.3f} | | |{pad}"
    )
    for name, row in p["objectives"].items():
      diffs = [_fmt_diff(row["diff"][m]) if "diff" in row else "" for m in ("pooled", "single")]
      extra = f" {_per_cell(row, 'pooled')} |" if cells else ""
      lines.append(
        f"| {where} | `{name}` | {fmt(row['pooled'])} | {fmt(row['single'])} | "
        f"{fmt(row['nll'])} | {diffs[0]} | {diffs[1]} |{extra}"
      )
  return "\n".join(lines)


def mean_ci(x: Sequence[float], seed: int = 0) -> dict[str, float]:
  """Mean over fit keys with a 95% bootstrap CI."""
  mean, lo, hi = stratified_bootstrap_ci([np.asarray(x)], statistic=np.mean, seed=seed)
  return {"mean": mean, "lo": lo, "hi": hi}


def compare(
  objectives, fit_one, measure_all, keys: jax.Array, label, log=print, fit_all=None
) -> dict:
  """Each objective o fitted once per key (`fit_one(o, key)` -> model parameters, vmapped
  over `keys`, or `fit_all(o, keys)` -> the batch of them) and measured (`measure_all`: a
  batch of models -> {metric: [keys]}) -> {name: {label, settings, per_key, mean/CI per
  metric}}, and for each MG objective ("vs", "diff"): the paired difference per key to the
  NLL-only arm of the same steps."""
  rows = {}
  for o in objectives:
    if fit_all is None:
      fitted = jax.jit(jax.vmap(lambda k, o=o: fit_one(o, k)))(keys)
    else:
      fitted = fit_all(o, keys)
    per_key = {k: np.asarray(v, np.float64).tolist() for k, v in measure_all(fitted).items()}
    rows[o.name] = {
      "label": label(o),
      "settings": o._asdict(),
      "per_key": per_key,
      **{m: mean_ci(per_key[m]) for m in METRICS},
    }
    log(f"{o.name}: " + ", ".join(f"{m} {np.mean(per_key[m]):.4f}" for m in METRICS))
  for o in objectives:
    base = next((b for b in objectives if not b.mg and b.steps == o.steps), None)
    if o.mg and base is not None:
      row, ref = rows[o.name], rows[base.name]["per_key"]
      row["vs"] = base.name
      row["diff"] = {m: mean_ci(np.subtract(row["per_key"][m], ref[m])) for m in METRICS}
  return rows


def check_finite(result: dict[str, Any]) -> list[str]:
  """Names of objectives with a non-finite metric (a blown-up fit)."""
  return [
    name
    for name, row in result["objectives"].items()
    if not all(math.isfinite(v) for m in METRICS for v in row["per_key"][m])
  ]
