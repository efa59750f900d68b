"""Learning curves, alignment curves and tables from metrics.csv files: runs grouped by
(env, algo), IQM with stratified-bootstrap 95% CIs, normalised aggregates, the milestone
table and the headline figures (`experiments/plot.py`, `summarize.py`, `ablations.py`).

`load_runs(paths)` reads run or suite folders into {(env, algo): arrays}; a label of two
folders' runs of the same (env, algo) is ALGO:FOLDER. `plot_runs(paths, out)` draws and
tables them:

- learning_curves.png: eval return vs env steps per env, IQM over seeds with a 95%
  bootstrap CI band;
- alignment.png: model_grad_cosine vs env steps (IQM and CI) for the algorithms whose
  cosine is one of PPO's policy gradients (mg, mle), alignment_sac.png for those of SAC's
  actor-loss gradients (mbpo, mg-sac);
- aggregate.png: IQM over all (env, seed) runs of the return normalised by the best
  algorithm's final IQM on each env, with 95% stratified-bootstrap CIs, vs env steps, for
  the algorithms run on every env;
- metrics.png (run folders only): every per-iteration metric against env steps, mean over
  seeds;
- table.csv / table.md: eval return at the evaluations nearest 25k, 50k and 100k env steps
  (or other milestones) and at the run's last (unless that is one of them), IQM [95% CI]
  per env and algorithm.

`compare_at(data, reference, milestones)` puts runs evaluated on other grids (published
curves, `experiments/compare_published.py`) beside a reference run at the same env steps,
each seed interpolated between the evaluations that bracket them.

Algorithms are drawn in the registry's order and colours (`Spec.color`); other labels
(ALGO:FOLDER, an algorithm without a colour) take cycle colours that no drawn algorithm has.
"""

import csv
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np

from mgjax import extras
from mgjax.algorithms import REGISTRY, metric_columns
from mgjax.run.outputs import read_metrics
from mgjax.stats import bootstrap_difference_ci, iqm, stratified_bootstrap_ci

MILESTONES = (25_000, 50_000, 100_000)
NOT_METRICS = ("algo", "env", "seed", "iteration", "env_steps", "wall_time_s")
# cos(ĝ_M, g_R) of PPO's policy gradient and of SAC's actor-loss gradient are different
# quantities: a figure each, for the algorithms that report the loss of that gradient.
ALIGNMENT_FIGURES = (
  ("alignment.png", "policy_loss", ""),
  ("alignment_sac.png", "actor_loss", "\n(SAC actor-loss gradients)"),
)
_CYCLE = tuple(f"C{i}" for i in range(10))


def load(path: Path):
  """-> {(env, algo): {"steps": [E], "return": [S, E], "cosine": [S, E], and every other
  metric column [S, E]}} over complete seeds (metrics.csv of any version: `read_metrics`
  reads earlier column names as current ones)."""
  return group(read_metrics(path))


def group(rows):
  """metrics.csv rows -> load()'s {(env, algo): arrays}: the registered algorithms' metric
  columns (NaN where a file lacks one) and any other the rows have."""
  cells = defaultdict(lambda: defaultdict(dict))
  for r in rows:
    cells[(r["env"], r["algo"])][int(r["seed"])][int(r["env_steps"])] = r
  names = [
    n
    for n in dict.fromkeys([*metric_columns(), *(k for r in rows for k in r)])
    if n not in NOT_METRICS
  ]
  data = {}
  for cell, seeds in cells.items():
    steps = sorted(set.intersection(*(set(s) for s in seeds.values())))
    num = lambda k: np.array([[_float(seeds[s][t].get(k)) for t in steps] for s in sorted(seeds)])
    data[cell] = {
      "steps": np.array(steps),
      "return": num("eval_return"),
      "cosine": num("model_grad_cosine"),
      **{n: num(n) for n in names},
    }
  return data


def _float(x: str) -> float:
  return float(x) if x not in ("", None) else float("nan")


def color(label: str, labels) -> str:
  """The registered algorithm's colour, or for other labels (e.g. "mbpo:TAG") a cycle colour
  that no algorithm drawn with them uses (line and band alike)."""
  own = {name: a.spec.color for name, a in REGISTRY.items() if a.spec.color}
  if label in own:
    return own[label]
  taken = {own[a] for a in labels if a in own}
  free = [c for c in _CYCLE if c not in taken]
  others = [a for a in labels if a not in own]
  return free[others.index(label) % len(free)]


def envs_algos(data):
  """The envs of `data`, sorted, and its labels: registered algorithms in the registry's
  order, then the others sorted."""
  labels = {a for _, a in data}
  algos = [a for a in REGISTRY if a in labels]
  return sorted({e for e, _ in data}), algos + sorted(labels - set(algos))


def curve(values: np.ndarray):
  """values [S, E] -> IQM, CI low, CI high per evaluation (finite seeds only)."""
  out = np.full((3, values.shape[1]), np.nan)
  for e in range(values.shape[1]):
    v = values[:, e][np.isfinite(values[:, e])]
    if v.size:
      out[:, e] = stratified_bootstrap_ci([v], reps=1000)
  return out


def plot_learning_curves(data, out: Path, key: str, ylabel: str, algos=None, name=None):
  """One panel per env of `key` (IQM and 95% CI band) against env steps, into out/name."""
  plt = extras.pyplot()
  envs, all_algos = envs_algos(data)
  algos = algos or all_algos
  fig, axes = plt.subplots(1, len(envs), figsize=(4.2 * len(envs), 3.4), squeeze=False)
  for ax, env in zip(axes[0], envs):
    for algo in algos:
      if (env, algo) not in data:
        continue
      d = data[(env, algo)]
      mid, lo, hi = curve(d[key])
      ax.plot(d["steps"], mid, color=color(algo, algos), label=algo)
      ax.fill_between(d["steps"], lo, hi, color=color(algo, algos), alpha=0.2)
    ax.set_title(env)
    ax.set_xlabel("env steps")
    ax.grid(alpha=0.3)
  axes[0][0].set_ylabel(ylabel)
  axes[0][-1].legend()
  fig.tight_layout()
  fig.savefig(out / name, dpi=110)
  plt.close(fig)


def alignment_labels(data, loss: str) -> list[str]:
  """The labels (ALGO or ALGO:FOLDER) of registered algorithms that report `loss` and whose
  runs logged a finite model_grad_cosine, sorted."""

  def reports(label):
    algo = REGISTRY.get(label.split(":")[0])
    return algo is not None and loss in algo.spec.metrics

  return sorted({a for (_, a), d in data.items() if reports(a) and np.isfinite(d["cosine"]).any()})


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


def plot_aggregate(data, out: Path):
  plt = extras.pyplot()
  fig, ax = plt.subplots(figsize=(5.5, 3.8))
  scores = normalised_scores(data)
  for algo, (steps, per_eval) in scores.items():
    ci = np.array([stratified_bootstrap_ci(s, reps=1000) for s in per_eval]).T
    ax.plot(steps, ci[0], color=color(algo, scores), label=algo)
    ax.fill_between(steps, ci[1], ci[2], color=color(algo, scores), alpha=0.2)
  ax.set_xlabel("env steps")
  ax.set_ylabel("IQM normalised return")
  ax.set_title("aggregate over environments")
  ax.grid(alpha=0.3)
  ax.legend()
  fig.tight_layout()
  fig.savefig(out / "aggregate.png", dpi=110)
  plt.close(fig)


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


def metric_files(path: Path) -> list[Path]:
  """The metrics.csv of a suite or run folder, or those of a sweep's settings."""
  if (path / "metrics.csv").is_file():
    return [path / "metrics.csv"]
  return sorted(path.glob("*/metrics.csv"))


def load_runs(paths: list[Path], extra_rows=()):
  """Rows of every folder's metrics.csv, and `extra_rows` (metrics.csv rows read elsewhere,
  e.g. `published.rows`), taken as they are; where two folders hold the same (env, algo),
  the algo is labelled ALGO:FOLDER -> (load()'s data, whether any folder is a single run)."""
  files = {f: read_metrics(f) for path in paths for f in metric_files(path)}
  cells = defaultdict(set)
  for f, file_rows in files.items():
    for r in file_rows:
      cells[(r["env"], r["algo"])].add(f)
  names = {cell: folder_names(fs) for cell, fs in cells.items() if len(fs) > 1}
  rows, single = [], False
  for f, file_rows in files.items():
    single |= (f.parent / "summary.json").is_file()  # a run's folder, not a suite's
    for r in file_rows:
      cell = (r["env"], r["algo"])
      rows.append({**r, "algo": f"{r['algo']}:{names[cell][f]}"} if cell in names else r)
  return group([*rows, *extra_rows]), single


def folder_names(files) -> dict:
  """Each file's folder named by the fewest trailing path parts that tell the folders apart:
  runs/a and runs/b are "a" and "b", x/mbpo-hopper and y/mbpo-hopper "x/mbpo-hopper" and
  "y/mbpo-hopper"."""
  parts = {f: f.parent.resolve().parts for f in files}
  for k in range(1, max(map(len, parts.values())) + 1):  # at the full paths they differ
    names = {f: "/".join(p[-k:]) for f, p in parts.items()}
    if len(set(names.values())) == len(set(parts.values())):
      return names


def plot_metrics(rows_by_cell, out: Path) -> None:
  """metrics.png: every per-iteration metric of the runs against env steps, mean over
  seeds, one panel per metric."""
  plt = extras.pyplot()
  columns = dict.fromkeys(n for d in rows_by_cell.values() for n in d)
  names = [
    n
    for n in columns
    if n not in ("steps", "return", "cosine", *NOT_METRICS)
    and any(np.isfinite(d[n]).any() for d in rows_by_cell.values() if n in d)
  ]
  cols = min(4, len(names))
  rows = -(-len(names) // cols)
  fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.8 * rows), squeeze=False)
  labels = sorted({a for _, a in rows_by_cell})
  for ax, name in zip(axes.flat, names):
    for (env, algo), d in sorted(rows_by_cell.items()):
      if name in d and np.isfinite(d[name]).any():
        with warnings.catch_warnings():  # a step no seed logged stays a gap (NaN)
          warnings.simplefilter("ignore", RuntimeWarning)
          mean = np.nanmean(d[name], axis=0)
        ax.plot(d["steps"], mean, color=color(algo, labels), label=f"{algo} ({env})")
    ax.set_title(name, fontsize=9)
    ax.set_xlabel("env steps", fontsize=8)
    ax.grid(alpha=0.3)
  for ax in list(axes.flat)[len(names) :]:
    ax.axis("off")
  axes.flat[0].legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(out / "metrics.png", dpi=100)
  plt.close(fig)


def plot_runs(paths: list[Path], out: Path, milestones=MILESTONES) -> list[str]:
  """Every figure and table of the module docstring for the runs in `paths`, into `out`
  -> the names of the files written."""
  data, single = load_runs(paths)
  plot_learning_curves(data, out, "return", "eval return (IQM, 95% CI)", name="learning_curves.png")
  written = ["learning_curves.png"]
  for name, loss, what in ALIGNMENT_FIGURES:
    algos = alignment_labels(data, loss)
    if algos:
      plot_learning_curves(
        data, out, "cosine", f"cos(ĝ_M, g_R) (IQM, 95% CI){what}", algos=algos, name=name
      )
      written.append(name)
  if single:
    plot_metrics(data, out)
    written.append("metrics.png")
  plot_aggregate(data, out)
  table(data, out, milestones)
  return written + ["aggregate.png", "table.csv", "table.md"]


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
