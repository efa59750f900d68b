"""Plots and tables from a benchmark suite's metrics.csv, or from run folders.

  python experiments/plot.py results/cpu            # writes PNGs and table.{csv,md} there
  python experiments/plot.py runs/mg-hopper         # one run folder (train.py --out)
  python experiments/plot.py runs/a runs/b --out plots/   # runs side by side

A run folder holds the metrics.csv of its seeds, a sweep's folder one per setting (each
becomes a run named after its setting). Runs of the same algorithm and env in several
folders are told apart as ALGO:FOLDER, FOLDER being as many of the folder's trailing path
parts as it takes to tell them apart. For run folders, metrics.png also draws every
per-iteration metric (losses, alignment, entropy, ...) against env steps, mean over seeds.

- learning_curves.png: eval return vs env steps per env, IQM over seeds with a 95%
  bootstrap CI band;
- alignment.png: model_grad_cosine vs env steps for mg and mle (IQM and CI), and
  alignment_sac.png the same for mbpo and mg-sac (cosine of SAC actor-loss gradients);
- aggregate.png: IQM over all (env, seed) runs of the return normalised by the best
  algorithm's final IQM on each env, with 95% stratified-bootstrap CIs, vs env steps, for
  the algorithms run on every env;
- table.csv / table.md: eval return at the evaluations nearest 25k, 50k and 100k env steps
  (or those of --at) and at the run's last (unless that is one of them), IQM [95% CI] per
  env and algorithm.

  python experiments/plot.py runs/a runs/b --out plots/ --at 10000 --at 15000
"""
import argparse
import csv
import sys
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np

from mgjax.algorithms import METRIC_COLUMNS
from mgjax.run.outputs import read_metrics
from mgjax.stats import iqm, stratified_bootstrap_ci

# red, blue, gray, green, orange
COLORS = {"mg": "C3", "mle": "C0", "ppo": "C7", "mbpo": "C2", "mg-sac": "C1", "sac": "C4"}
MILESTONES = (25_000, 50_000, 100_000)
NOT_METRICS = ("algo", "env", "seed", "iteration", "env_steps", "wall_time_s")


def load(path: Path):
  """-> {(env, algo): {"steps": [E], "return": [S, E], "cosine": [S, E], and every other
  metric column [S, E]}} over complete seeds (metrics.csv of any version: `read_metrics`
  reads earlier column names as current ones)."""
  return group(read_metrics(path))


def group(rows):
  """metrics.csv rows -> load()'s {(env, algo): arrays}."""
  cells = defaultdict(lambda: defaultdict(dict))
  for r in rows:
    cells[(r["env"], r["algo"])][int(r["seed"])][int(r["env_steps"])] = r
  data = {}
  for cell, seeds in cells.items():
    steps = sorted(set.intersection(*(set(s) for s in seeds.values())))
    num = lambda k: np.array([[_float(seeds[s][t].get(k)) for t in steps]
                              for s in sorted(seeds)])
    data[cell] = {"steps": np.array(steps), "return": num("eval_return"),
                  "cosine": num("model_grad_cosine"),
                  **{n: num(n) for n in METRIC_COLUMNS if n not in NOT_METRICS}}
  return data


def _float(x: str) -> float:
  return float(x) if x not in ("", None) else float("nan")


def color(algo: str, algos) -> str:
  """The algorithm's colour, or for other labels (e.g. "mbpo:TAG") a cycle colour that no
  algorithm drawn with them uses (line and band alike)."""
  if algo in COLORS:
    return COLORS[algo]
  taken = {COLORS[a] for a in algos if a in COLORS}
  free = [c for c in (f"C{i}" for i in range(10)) if c not in taken]
  others = [a for a in algos if a not in COLORS]
  return free[others.index(algo) % len(free)]


def curve(values: np.ndarray):
  """values [S, E] -> IQM, CI low, CI high per evaluation (finite seeds only)."""
  out = np.full((3, values.shape[1]), np.nan)
  for e in range(values.shape[1]):
    v = values[:, e][np.isfinite(values[:, e])]
    if v.size:
      out[:, e] = stratified_bootstrap_ci([v], reps=1000)
  return out


def _envs_algos(data):
  envs = sorted({e for e, _ in data})
  algos = [a for a in COLORS if any(a == b for _, b in data)]
  return envs, algos + sorted({b for _, b in data} - set(algos))


def plot_learning_curves(data, out: Path, key: str, ylabel: str, algos=None, name=None):
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  envs, all_algos = _envs_algos(data)
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


def normalised_scores(data):
  """{algo: (steps, [{env: per-seed normalised scores}] per evaluation)}, normalising each env
  by the best algorithm's final IQM return on it. Only algorithms with a run on every env
  are aggregated: one on fewer envs would be averaged over other tasks than the rest."""
  envs, algos = _envs_algos(data)
  best = {e: max(iqm(data[(e, a)]["return"][:, -1]) for a in algos if (e, a) in data)
          for e in envs}
  out = {}
  for algo in algos:
    if any((e, algo) not in data for e in envs):
      continue
    n = min(len(data[(e, algo)]["steps"]) for e in envs)
    steps = data[(envs[0], algo)]["steps"][:n]
    out[algo] = (steps, [[data[(e, algo)]["return"][:, i] / abs(best[e]) for e in envs]
                         for i in range(n)])
  return out


def plot_aggregate(data, out: Path):
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
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
  envs, algos = _envs_algos(data)
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
        lines.append({"env": env, "algo": algo, "milestone": m, "env_steps": int(d["steps"][i]),
                      "seeds": d["return"].shape[0], "iqm": mid, "ci_low": lo, "ci_high": hi})
  with open(out / "table.csv", "w", newline="") as f:
    w = csv.DictWriter(f, ["env", "algo", "milestone", "env_steps", "seeds", "iqm", "ci_low",
                           "ci_high"])
    w.writeheader()
    w.writerows(lines)
  marks = sorted({r["milestone"] for r in lines})
  md = ["| env | algo | " + " | ".join(f"{m / 1000:g}k" for m in marks) + " |",
        "|---|---|" + "---|" * len(marks)]
  for env in envs:
    for algo in algos:
      cells = {r["milestone"]: r for r in lines if r["env"] == env and r["algo"] == algo}
      if cells:
        md.append(f"| {env} | {algo} | " + " | ".join(
            f"{cells[m]['iqm']:.0f} [{cells[m]['ci_low']:.0f}, {cells[m]['ci_high']:.0f}]"
            if m in cells else "" for m in marks) + " |")
  (out / "table.md").write_text("\n".join(md) + "\n")
  return lines


def metric_files(path: Path) -> list[Path]:
  """The metrics.csv of a suite or run folder, or those of a sweep's settings."""
  if (path / "metrics.csv").is_file():
    return [path / "metrics.csv"]
  return sorted(path.glob("*/metrics.csv"))


def load_runs(paths: list[Path]):
  """Rows of every folder's metrics.csv; where two folders hold the same (env, algo), the
  algo is labelled ALGO:FOLDER -> (load()'s data, whether any folder is a single run)."""
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
  return group(rows), single


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
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  names = [n for n in METRIC_COLUMNS if n not in NOT_METRICS and any(
      np.isfinite(d[n]).any() for d in rows_by_cell.values() if n in d)]
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
  for ax in list(axes.flat)[len(names):]:
    ax.axis("off")
  axes.flat[0].legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(out / "metrics.png", dpi=100)
  plt.close(fig)


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("paths", nargs="+", metavar="DIR",
                 help="a benchmark suite folder, or run folders (train.py --out)")
  p.add_argument("--out", default=None,
                 help="where the figures go (default: the folder, if only one is given)")
  p.add_argument("--at", action="append", default=None, metavar="STEPS",
                 help="env steps of a table column (repeatable; default 25000, 50000, 100000)")
  args = p.parse_args(argv)
  for at in args.at or ():
    if not at.isdigit() or int(at) <= 0:
      print(f"plot.py: error: at={at!r}: must be a positive number of env steps",
            file=sys.stderr)
      return 2
  milestones = sorted({int(at) for at in args.at}) if args.at else MILESTONES
  paths = [Path(x) for x in args.paths]
  for path in paths:
    if not metric_files(path):
      print(f"plot.py: error: path={str(path)!r}: no metrics.csv there", file=sys.stderr)
      return 2
  if args.out is None and len(paths) > 1:
    print(f"plot.py: error: out=None: give --out for {len(paths)} folders", file=sys.stderr)
    return 2
  out = Path(args.out) if args.out else paths[0]
  out.mkdir(parents=True, exist_ok=True)
  data, single = load_runs(paths)
  plot_learning_curves(data, out, "return", "eval return (IQM, 95% CI)",
                       name="learning_curves.png")
  written = ["learning_curves.png"]
  # PPO's policy gradient (mg, mle) and SAC's actor-loss gradient (mbpo, mg-sac) are
  # different quantities: one figure each.
  for name, group, what in (("alignment.png", ("mg", "mle"), ""),
                            ("alignment_sac.png", ("mbpo", "mg-sac"), "\n(SAC actor-loss gradients)")):
    algos = sorted({a for _, a in data if a.split(":")[0] in group})  # ALGO or ALGO:FOLDER
    if algos:
      plot_learning_curves(data, out, "cosine", f"cos(ĝ_M, g_R) (IQM, 95% CI){what}",
                           algos=algos, name=name)
      written.append(name)
  if single:
    plot_metrics(data, out)
    written.append("metrics.png")
  plot_aggregate(data, out)
  table(data, out, milestones)
  print(f"wrote {', '.join(written)}, aggregate.png, table.csv, table.md in {out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
