"""Two cells (or more) of the same env against a reference cell: eval return (or --metric, any
metrics.csv column) IQM [95% CI] at given env steps, and over the whole run, with each cell's
difference to the reference.

  python experiments/compare_cells.py results/cpu/mle-hopper \
      results/cpu-full-strength/mg-hopper --at 51200 --at 102400

Per seed, "whole run" is the mean eval return over every evaluation (the area under its
learning curve, one number per seed, so no evaluation is selected after the fact); at a
column, the evaluation nearest those env steps. Differences are IQM(cell) − IQM(reference)
with both cells' seeds resampled apart (`mgjax.stats.bootstrap_difference_ci`): the seeds of
two cells are independent runs, not pairs.
"""

import argparse
import sys
from pathlib import Path

import numpy as np

from mgjax import stats
from mgjax.run.outputs import read_metrics


def per_seed(folder: Path, metric: str = "eval_return") -> dict[int, dict[int, float]]:
  """{seed: {env_steps: value}} of a metric in a cell's metrics.csv (rows where it is empty
  left out)."""
  out: dict[int, dict[int, float]] = {}
  for r in read_metrics(folder / "metrics.csv"):
    if r.get(metric, "") != "":
      out.setdefault(int(r["seed"]), {})[int(r["env_steps"])] = float(r[metric])
  return out


def scores(curves: dict[int, dict[int, float]], at: int | None) -> np.ndarray:
  """Per seed: the return at the evaluation nearest `at`, or (None) the mean over all."""
  if at is None:
    return np.array([np.mean(list(c.values())) for c in curves.values()])
  return np.array([c[min(c, key=lambda s: abs(s - at))] for c in curves.values()])


def _fmt(point_lo_hi, sign=False, digits=0) -> str:
  p, lo, hi = point_lo_hi
  f = f"{{:{'+' if sign else ''}.{digits}f}}"
  return f"{f.format(p)} [{f.format(lo)}, {f.format(hi)}]"


def table(
  reference: Path, cells: list[Path], at: list[int], metric: str = "eval_return", digits=0
) -> str:
  columns = [*at, None]
  names = [f"{s:,}" for s in at] + ["whole run"]
  lines = ["| cell | " + " | ".join(names) + " |", "|---|" + "---|" * len(columns)]
  ref = per_seed(reference, metric)
  for folder in [reference, *cells]:
    curves = per_seed(folder, metric)
    row = [_fmt(stats.stratified_bootstrap_ci([scores(curves, a)]), digits=digits) for a in columns]
    lines.append(f"| {folder} | " + " | ".join(row) + " |")
    if folder != reference:
      diff = [
        _fmt(
          stats.bootstrap_difference_ci(scores(curves, a), scores(ref, a)),
          sign=True,
          digits=digits,
        )
        for a in columns
      ]
      name = lambda f: "/".join(f.parts[-2:])
      lines.append(f"| {name(folder)} − {name(reference)} | " + " | ".join(diff) + " |")
  return "\n".join(lines)


def main(argv=None) -> int:
  p = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  p.add_argument("reference", help="the cell the others are compared with")
  p.add_argument("cells", nargs="+", help="cell folders with a metrics.csv")
  p.add_argument("--at", type=int, action="append", default=None, help="env steps (repeatable)")
  p.add_argument("--metric", default="eval_return", help="the metrics.csv column compared")
  p.add_argument("--digits", type=int, default=0, help="decimals printed")
  args = p.parse_args(argv)
  folders = [Path(args.reference), *map(Path, args.cells)]
  for f in folders:
    if not (f / "metrics.csv").is_file():
      print(f"error: cells={str(f)!r}: no metrics.csv in this folder", file=sys.stderr)
      return 2
  for f in folders:
    if not per_seed(f, args.metric):
      print(f"error: metric={args.metric!r}: no value of it in {str(f)!r}", file=sys.stderr)
      return 2
  print(table(folders[0], folders[1:], args.at or [51_200, 102_400], args.metric, args.digits))
  return 0


if __name__ == "__main__":
  sys.exit(main())
