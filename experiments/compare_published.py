"""Runs against published learning curves stored in the repo (`results/published/`), at env
steps where the two are evaluated on different grids (`mgjax.analysis.curves.compare_at`).

  python experiments/compare_published.py results/cpu/sac-hopper results/cpu-sac/sac-walker2d \\
      --reference sac --at 25000 --at 40000 --out results/published-sac

Each run's return is interpolated linearly per seed between the two evaluations that bracket
the env steps of a column (exact where it is an evaluation), then IQM [95% CI] over seeds;
the differences are IQM(reference) − IQM(published) [95% CI], each side's seeds resampled on
their own. A published curve that ends before a column has no cell there.

The published curves are PUBLISHED/metrics.csv (three SACs) and PUBLISHED/erl_lib/ (the DHMBPO
repository's SAC, a longer SAC run, MBPO and DHMBPO on hopper, walker2d, halfcheetah and ant,
its CSVs as they are, read by `mgjax.analysis.published`):

  python experiments/compare_published.py results/cpu/sac-hopper results/cpu-sac/sac-walker2d \\
      --at 25000 --at 40000 --at 60000 --at 100000 --out results/published-erl_lib

Writes OUT/table.csv, OUT/table.md (returns, with the evaluations each cell interpolates
between, and the differences) and OUT/learning_curves.png (every curve, IQM and CI band);
prints table.md. results/published/README.md and results/published/erl_lib/README.md say
where each published curve comes from.
"""

import csv
import sys
from pathlib import Path

from mgjax import extras
from mgjax.analysis import curves, published
from mgjax.run.cli import Parser

PUBLISHED = Path(__file__).resolve().parent.parent / "results" / "published"
COLUMNS = [
  "env",
  "algo",
  "milestone",
  "from_env_steps",
  "to_env_steps",
  "seeds",
  "iqm",
  "ci_low",
  "ci_high",
  "reference_minus",
  "reference_minus_low",
  "reference_minus_high",
]


def markdown(lines, reference: str) -> str:
  """table.md: the returns per env and run, then IQM(reference) − IQM(run) per published run."""
  marks = sorted({r["milestone"] for r in lines})
  head = " | ".join(f"{m / 1000:g}k" for m in marks)
  rows = {}
  for r in lines:
    rows.setdefault((r["env"], r["algo"]), {})[r["milestone"]] = r

  def ret(r):
    ci = f"{r['iqm']:.0f} [{r['ci_low']:.0f}, {r['ci_high']:.0f}]"
    if r["from_env_steps"] == r["to_env_steps"]:
      return ci
    return f"{ci} ({r['from_env_steps']:,}–{r['to_env_steps']:,})"

  def diff(r):
    return (
      f"{r['reference_minus']:+.0f} [{r['reference_minus_low']:+.0f}, "
      f"{r['reference_minus_high']:+.0f}]"
    )

  md = [f"| env | runs | seeds | {head} |", "|---|---|---|" + "---|" * len(marks)]
  for (env, algo), by in rows.items():
    seeds = next(iter(by.values()))["seeds"]
    md.append(
      f"| {env} | {algo} | {seeds} | "
      + " | ".join(ret(by[m]) if m in by else "" for m in marks)
      + " |"
    )
  md += ["", f"| env | `{reference}` minus | {head} |", "|---|---|" + "---|" * len(marks)]
  for (env, algo), by in rows.items():
    if algo != reference:
      md.append(
        f"| {env} | {algo} | "
        + " | ".join(diff(by[m]) if "reference_minus" in by.get(m, {}) else "" for m in marks)
        + " |"
      )
  return "\n".join(md) + "\n"


def main(argv=None) -> int:
  p = Parser(description=__doc__)
  p.add_argument("paths", nargs="+", metavar="DIR", help="suite or run folders of the runs")
  p.add_argument(
    "--published",
    default=str(PUBLISHED),
    metavar="DIR",
    help="folder of the published curves: metrics.csv and/or erl_lib/ (default: results/published)",
  )
  p.add_argument("--reference", default="sac", help="the runs' algorithm (default: sac)")
  p.add_argument(
    "--at",
    action="append",
    default=None,
    metavar="STEPS",
    help="env steps of a column (repeatable; default 25000, 50000, 100000)",
  )
  p.add_argument("--out", required=True, help="where table.{csv,md} and the figure go")
  args = p.parse_args(argv)
  extras.require("matplotlib", "plotting", p)
  for at in args.at or ():
    if not at.isdigit() or int(at) <= 0:
      p.error(f"at={at!r}: must be a positive number of env steps")
  paths = [Path(x) for x in args.paths]
  for path in paths:
    if not curves.metric_files(path):
      p.error(f"path={str(path)!r}: no metrics.csv there")
  milestones = sorted({int(at) for at in args.at}) if args.at else curves.MILESTONES
  folder = Path(args.published)
  # Published curves beyond the last column (erl_lib's run to 500k and 5M env steps) would
  # only stretch the figure: each seed stops at its first evaluation at or after it.
  extra = published.rows(folder, until=max(milestones))
  if curves.metric_files(folder):
    paths.append(folder)
  elif not extra:
    p.error(f"published={str(folder)!r}: no metrics.csv or erl_lib/ curves there")
  data, _ = curves.load_runs(paths, extra_rows=extra)
  if not any(label == args.reference for _, label in data):
    labels = sorted({label for _, label in data})
    p.error(f"reference={args.reference!r}: no runs of it (runs: {', '.join(labels)})")
  lines = curves.compare_at(data, args.reference, milestones)
  out = Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  with open(out / "table.csv", "w", newline="") as f:
    w = csv.DictWriter(f, COLUMNS)
    w.writeheader()
    w.writerows(lines)
  md = markdown(lines, args.reference)
  (out / "table.md").write_text(md)
  curves.plot_learning_curves(
    data, out, "return", "eval return (IQM, 95% CI)", name="learning_curves.png"
  )
  print(md, end="")
  return 0


if __name__ == "__main__":
  sys.exit(main())
