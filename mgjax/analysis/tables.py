"""Statistics of grouped curves (`mgjax.analysis.runs`): IQM with stratified-bootstrap 95%
CIs per evaluation, normalised aggregates, the milestone table (table.csv / table.md), the
steps to reach and late returns against a reference, and RESULTS.md's headline figures
(`experiments/summarize.py`).

table.csv / table.md: eval return at the evaluations nearest 25k, 50k and 100k env steps (or
other milestones) and at the run's last (unless that is one of them), IQM [95% CI] per env
and algorithm.

`compare_at(data, reference, milestones)` puts runs evaluated on other grids (published
curves, `experiments/compare_published.py`) beside a reference run at the same env steps,
each seed interpolated between the evaluations that bracket them.
"""

import csv
from pathlib import Path

import numpy as np

from mgjax.analysis.runs import envs_algos, load
from mgjax.stats import bootstrap_difference_ci, iqm, stratified_bootstrap_ci

MILESTONES = (25_000, 50_000, 100_000)


def curve(values: np.ndarray):
  """values [S, E] -> IQM, CI low, CI high per evaluation (finite seeds only)."""
  out = np.full((3, values.shape[1]), np.nan)
  for e in range(values.shape[1]):
    v = values[:, e][np.isfinite(values[:, e])]
    if v.size:
      out[:, e] = stratified_bootstrap_ci([v], reps=1000)
  return out


def normalised_scores(data):
  """{algo: (steps, [{env: per-seed normalised scores}] per evaluation)}, normalising each env
  by the best aggregated algorithm's final IQM return on it. Only algorithms with a run on
  every env are aggregated (one on fewer envs would be averaged over other tasks than the
  rest), and only they set the normaliser, so that adding such a cell changes no score."""
  envs, algos = envs_algos(data)
  algos = [a for a in algos if all((e, a) in data for e in envs)]
  if not algos:
    return {}
  best = {e: max(iqm(data[(e, a)]["return"][:, -1]) for a in algos) for e in envs}
  out = {}
  for algo in algos:
    n = min(len(data[(e, algo)]["steps"]) for e in envs)
    steps = data[(envs[0], algo)]["steps"][:n]
    out[algo] = (
      steps,
      [[data[(e, algo)]["return"][:, i] / abs(best[e]) for e in envs] for i in range(n)],
    )
  return out


def table(data, out: Path, milestones=MILESTONES):
  """table.csv and table.md: per env and algorithm, IQM [95% CI] over seeds at the
  evaluation nearest each milestone the run reaches (within 10%) and at its last."""
  envs, algos = envs_algos(data)
  lines = []
  for env in envs:
    for algo in algos:
      if (env, algo) not in data:
        continue
      d = data[(env, algo)]
      last = int(d["steps"][-1])
      marks = [m for m in milestones if m <= last * 1.1]
      marks += [last] if all(abs(last - m) > 0.1 * m for m in marks) else []
      for m in marks:
        i = int(np.argmin(np.abs(d["steps"] - m)))
        mid, lo, hi = stratified_bootstrap_ci([d["return"][:, i]])
        lines.append(
          {
            "env": env,
            "algo": algo,
            "milestone": m,
            "env_steps": int(d["steps"][i]),
            "seeds": d["return"].shape[0],
            "iqm": mid,
            "ci_low": lo,
            "ci_high": hi,
          }
        )
  with open(out / "table.csv", "w", newline="") as f:
    w = csv.DictWriter(
      f, ["env", "algo", "milestone", "env_steps", "seeds", "iqm", "ci_low", "ci_high"]
    )
    w.writeheader()
    w.writerows(lines)
  marks = sorted({r["milestone"] for r in lines})
  md = [
    "| env | algo | " + " | ".join(f"{m / 1000:g}k" for m in marks) + " |",
    "|---|---|" + "---|" * len(marks),
  ]
  for env in envs:
    for algo in algos:
      cells = {r["milestone"]: r for r in lines if r["env"] == env and r["algo"] == algo}
      if cells:
        md.append(
          f"| {env} | {algo} | "
          + " | ".join(
            f"{cells[m]['iqm']:.0f} [{cells[m]['ci_low']:.0f}, {cells[m]['ci_high']:.0f}]"
            if m in cells
            else ""
            for m in marks
          )
          + " |"
        )
  (out / "table.md").write_text("\n".join(md) + "\n")
  return lines


def steps_to_reach(data, reference: str = "mle") -> dict:
  """Per env that `reference` ran on: its IQM return over seeds at its last evaluation (the
  target), and for each algorithm the env steps of its first evaluation whose IQM reaches
  it (None: none does) -> {env: {"target", "target_steps", "steps": {algo: steps}}}."""
  out = {}
  for env in sorted({e for e, a in data if a == reference}):
    ref = data[(env, reference)]
    target = float(iqm(ref["return"][:, -1]))
    reached = {}
    for (e, algo), d in sorted(data.items()):
      if e == env:
        curve = np.array([iqm(d["return"][:, i]) for i in range(d["return"].shape[1])])
        hit = np.flatnonzero(curve >= target)
        reached[algo] = int(d["steps"][hit[0]]) if hit.size else None
    out[env] = {"target": target, "target_steps": int(ref["steps"][-1]), "steps": reached}
  return out


def late_returns(data, reference: str = "mle", last_fraction: float = 0.25) -> dict:
  """Per env that `reference` ran on, the return each algorithm holds late in training: per
  seed the mean eval return over the evaluations at env steps in [start, end], end the
  reference's last evaluation and start = (1 − last_fraction) × end; then the IQM [95% CI]
  over seeds and the IQM difference to the reference [95% CI], each algorithm's seeds
  resampled on their own (`stats.bootstrap_difference_ci`). Less noisy than one final
  evaluation -> {env: {"from_env_steps", "algos": {algo: {"seeds", "iqm", "ci"}, the others
  also with "minus_reference", "minus_reference_ci"}}}."""
  out = {}
  for env in sorted({e for e, a in data if a == reference}):
    end = data[(env, reference)]["steps"][-1]
    start = (1.0 - last_fraction) * end
    per_seed = {}
    for (e, algo), d in sorted(data.items()):
      late = (d["steps"] >= start) & (d["steps"] <= end)
      if e == env and late.any():
        per_seed[algo] = np.nanmean(d["return"][:, late], axis=1)
    algos = {}
    for algo, v in per_seed.items():
      mid, lo, hi = stratified_bootstrap_ci([v], reps=2000)
      algos[algo] = {"seeds": v.tolist(), "iqm": mid, "ci": [lo, hi]}
      if algo != reference:
        diff, dlo, dhi = bootstrap_difference_ci(v, per_seed[reference])
        algos[algo].update(minus_reference=diff, minus_reference_ci=[dlo, dhi])
    out[env] = {"from_env_steps": int(np.ceil(start)), "algos": algos}
  return out


def interpolate(steps: np.ndarray, values: np.ndarray, at: int):
  """values [S, E] evaluated at env steps `steps` [E] (increasing) -> [S] at env steps `at`,
  each seed linearly interpolated between the evaluations t_i ≤ at ≤ t_{i+1} that bracket it:
  v(at) = v_i + (v_{i+1} − v_i)(at − t_i)/(t_{i+1} − t_i), exact where at is an evaluation;
  None where `at` is outside [t_0, t_{E−1}]."""
  steps = np.asarray(steps, np.float64)
  if at < steps[0] or at > steps[-1]:
    return None
  return np.array([np.interp(at, steps, v) for v in np.asarray(values, np.float64)])


def compare_at(data, reference: str, milestones) -> list[dict]:
  """Each label's returns against `reference`'s on the same env, at env steps where curves
  are evaluated on different grids (e.g. published runs): per env, label and milestone the
  IQM [95% CI] over seeds of the return interpolated there (`interpolate`), the bracketing
  evaluations, and for labels other than the reference IQM(reference) − IQM(label) [95% CI],
  each side's seeds resampled on their own (`stats.bootstrap_difference_ci`). A (label,
  milestone) outside the label's evaluations is left out."""
  envs, labels = envs_algos(data)
  lines = []
  for env in envs:
    if (env, reference) not in data:
      continue
    for m in milestones:
      ref = data[(env, reference)]
      ref_at = interpolate(ref["steps"], ref["return"], m)
      for label in [reference, *(x for x in labels if x != reference)]:
        if (env, label) not in data:
          continue
        d = data[(env, label)]
        v = interpolate(d["steps"], d["return"], m)
        if v is None:
          continue
        mid, lo, hi = stratified_bootstrap_ci([v])
        i = int(np.searchsorted(d["steps"], m))  # the first evaluation at or after m
        line = {
          "env": env,
          "algo": label,
          "milestone": m,
          "from_env_steps": int(d["steps"][i if d["steps"][i] == m else i - 1]),
          "to_env_steps": int(d["steps"][i]),
          "seeds": v.size,
          "iqm": mid,
          "ci_low": lo,
          "ci_high": hi,
        }
        if label != reference and ref_at is not None:
          diff, dlo, dhi = bootstrap_difference_ci(ref_at, v)
          line.update(reference_minus=diff, reference_minus_low=dlo, reference_minus_high=dhi)
        lines.append(line)
  return lines


def headline(suite: Path) -> dict:
  """RESULTS.md's headline figures of a suite folder (its table.csv, from `plot_runs`, and
  metrics.csv): MG/MLE and MG/PPO IQM ratios at the last milestone per env;
  cos(ĝ_M, g_R) averaged over training (per seed, then mean ± s.e. over seeds); the
  aggregate normalised IQM [95% CI] at the last common evaluation; the env steps each
  algorithm needs to reach `mle`'s final IQM (`steps_to_reach`); the return each holds over
  the last quarter of `mle`'s run, against `mle`'s (`late_returns`)."""
  with open(suite / "table.csv", newline="") as f:
    rows = list(csv.DictReader(f))
  last = {}
  for r in rows:
    key = (r["env"], r["algo"])
    if key not in last or int(r["milestone"]) > int(last[key]["milestone"]):
      last[key] = r
  ratios = {}
  for env in sorted({e for e, _ in last}):
    value = {a: float(last[(env, a)]["iqm"]) for e, a in last if e == env}
    if "mg" in value:
      ratios[env] = {f"mg_over_{b}": value["mg"] / value[b] for b in ("mle", "ppo") if b in value}
  data = load(suite / "metrics.csv")
  alignment = {}
  for (env, algo), d in data.items():
    if not np.any(np.isfinite(d["cosine"])):  # no model (ppo)
      continue
    per_seed = np.nanmean(d["cosine"], axis=1)
    per_seed = per_seed[np.isfinite(per_seed)]
    if per_seed.size:
      alignment.setdefault(env, {})[algo] = {
        "mean": float(per_seed.mean()),
        "se": float(per_seed.std() / np.sqrt(per_seed.size)),
      }
  aggregate = {}
  for algo, (steps, per_eval) in normalised_scores(data).items():
    mid, lo, hi = stratified_bootstrap_ci(per_eval[-1], reps=2000)
    aggregate[algo] = {"env_steps": int(steps[-1]), "iqm": mid, "ci": [lo, hi]}
  return {
    "ratios_at_last_milestone": ratios,
    "alignment_mean_over_training": alignment,
    "aggregate_normalised": aggregate,
    "steps_to_reach_mle_final": steps_to_reach(data),
    "late_return_vs_mle": late_returns(data),
  }
