"""Run and suite folders read into curves: metrics.csv rows grouped by (env, algo) into
arrays over seeds and evaluations (`mgjax.analysis.curves`).

`load_runs(paths)` reads run or suite folders into {(env, algo): arrays}; a label of two
folders' runs of the same (env, algo) is ALGO:FOLDER. `envs_algos` orders what was read:
algorithms in the registry's order, then the other labels.
"""

from collections import defaultdict
from pathlib import Path

import numpy as np

from mgjax.algorithms import REGISTRY, metric_columns
from mgjax.run.outputs import read_metrics

NOT_METRICS = ("algo", "env", "seed", "iteration", "env_steps", "wall_time_s")


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


def envs_algos(data):
  """The envs of `data`, sorted, and its labels: registered algorithms in the registry's
  order, then the others sorted."""
  labels = {a for _, a in data}
  algos = [a for a in REGISTRY if a in labels]
  return sorted({e for e, _ in data}), algos + sorted(labels - set(algos))


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
