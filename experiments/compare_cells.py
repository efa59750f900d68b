"""Two cells (or more) of the same env against a reference cell: eval return IQM [95% CI] at
given env steps, and over the whole run, with each cell's difference to the reference.

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


def per_seed(folder: Path) -> dict[int, dict[int, float]]:
  """{seed: {env_steps: eval_return}} of a cell's metrics.csv."""
  out: dict[int, dict[int, float]] = {}
  for r in read_metrics(folder / "metrics.csv"):
    if r.get("eval_return", "") != "":
      out.setdefault(int(r["seed"]), {})[int(r["env_steps"])] = float(r["eval_return"])
  return out


def scores(curves: dict[int, dict[int, float]], at: int | None) -> np.ndarray:
  """Per seed: the return at the evaluation nearest `at`, or (None) the mean over all."""
  if at is None:
    return np.array([np.mean(list(c.values())) for c in curves.values()])
  return np.array([c[min(c, key=lambda s: abs(s - at))] for c in curves.values()])


def _fmt(point_lo_hi, sign=False) -> str:
  p, lo, hi = point_lo_hi
  f = "{:+.0f}" if sign else "{:.0f}"
  return f"{f.format(p)} [{f.format(lo)}, {f.format(hi)}]"


def table(reference: Path, cells: list[Path], at: list[int]) -> str:
  columns = [*at, None]
  names = [f"{s:,}" for s in at] + ["whole run"]
  lines = ["| cell | " + " | ".join(names) + " |", "|---|" + "---|" * len(columns)]
  ref = per_seed(reference)
  for folder in [reference, *cells]:
    curves = per_seed(folder)
    row = [_fmt(stats.stratified_bootstrap_ci([scores(curves, a)])) for a in columns]
    lines.append(f"| {folder} | " + " | ".join(row) + " |")
    if folder != reference:
      diff = [
        _fmt(stats.bootstrap_difference_ci(scores(curves, a), scores(ref, a)), sign=True)
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
  args = p.parse_args(argv)
  folders = [Path(args.reference), *map(Path, args.cells)]
  for f in folders:
    if not (f / "metrics.csv").is_file():
      print(f"error: cells={str(f)!r}: no metrics.csv in this folder", file=sys.stderr)
      return 2
  print(table(folders[0], folders[1:], args.at or [51_200, 102_400]))
  return 0


if __name__ == "__main__":
  sys.exit(main())
