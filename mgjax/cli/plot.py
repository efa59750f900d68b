"""Plots and tables from a benchmark suite's metrics.csv, or from run folders
(`mgjax.analysis.curves.plot_runs`).

  mgjax plot results/cpu            # writes PNGs and table.{csv,md} there
  mgjax plot runs/mg-hopper         # one run folder (mgjax train --out)
  mgjax plot runs/a runs/b --out plots/   # runs side by side

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

  mgjax plot runs/a runs/b --out plots/ --at 10000 --at 15000
"""

import sys
from pathlib import Path


def main(argv=None, launcher: str | None = None) -> int:
  """The command: `launcher` names it in messages (`mgjax.cli.command`; None:
  experiments/plot.py)."""
  from mgjax import extras
  from mgjax.analysis import curves
  from mgjax.cli import command, describe
  from mgjax.run.cli import Parser

  prog = None if launcher is None else command("plot", launcher)
  p = Parser(prog=prog, description=describe(__doc__, launcher))
  p.add_argument(
    "paths",
    nargs="+",
    metavar="DIR",
    help="a benchmark suite folder, or run folders (mgjax train --out)",
  )
  p.add_argument(
    "--out", default=None, help="where the figures go (default: the folder, if only one is given)"
  )
  p.add_argument(
    "--at",
    action="append",
    default=None,
    metavar="STEPS",
    help="env steps of a table column (repeatable; default 25000, 50000, 100000)",
  )
  args = p.parse_args(argv)
  extras.require("matplotlib", "plotting", p)
  for at in args.at or ():
    if not at.isdigit() or int(at) <= 0:
      p.error(f"at={at!r}: must be a positive number of env steps")
  paths = [Path(x) for x in args.paths]
  for path in paths:
    if not curves.metric_files(path):
      p.error(f"path={str(path)!r}: no metrics.csv there")
  if args.out is None and len(paths) > 1:
    p.error(f"out=None: give --out for {len(paths)} folders")
  out = Path(args.out) if args.out else paths[0]
  out.mkdir(parents=True, exist_ok=True)
  milestones = sorted({int(at) for at in args.at}) if args.at else curves.MILESTONES
  written = curves.plot_runs(paths, out, milestones)
  print(f"wrote {', '.join(written)} in {out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
