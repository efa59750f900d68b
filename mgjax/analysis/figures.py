"""The figures of grouped curves (`mgjax.analysis.runs`), drawn with matplotlib (the viz
extra, imported through `mgjax.extras` by the functions that draw). `plot_runs(paths, out)`
draws and tables run or suite folders:

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
- table.csv / table.md: the milestone table (`mgjax.analysis.tables.table`).

Algorithms are drawn in the registry's order and colours (`Spec.color`); other labels
(ALGO:FOLDER, an algorithm without a colour) take cycle colours that no drawn algorithm has.
"""

import warnings
from pathlib import Path

import numpy as np

from mgjax import extras
from mgjax.algorithms import REGISTRY
from mgjax.analysis.runs import NOT_METRICS, envs_algos, load_runs
from mgjax.analysis.tables import MILESTONES, curve, normalised_scores, table
from mgjax.stats import stratified_bootstrap_ci

# cos(ĝ_M, g_R) of PPO's policy gradient and of SAC's actor-loss gradient are different
# quantities: a figure each, for the algorithms that report the loss of that gradient.
ALIGNMENT_FIGURES = (
  ("alignment.png", "policy_loss", ""),
  ("alignment_sac.png", "actor_loss", "\n(SAC actor-loss gradients)"),
)
_CYCLE = tuple(f"C{i}" for i in range(10))


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
