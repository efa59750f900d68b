"""Gathers ablation cells next to their baseline and plots them as one comparison.

  python experiments/ablations.py --env hopper --algo mg --reference mle --reference ppo
  python experiments/ablations.py --env hopper --algo mbpo --reference mg \
      --out results/cpu-mbpo-hopper      # another algorithm's cells: its own folder

Each `benchmark.py --tag NAME --set FIELD=VALUE` run lives in RESULTS/SUITE-NAME/ALGO-ENV/.
This script relabels every such cell's rows as algorithm "ALGO:NAME" (the baseline as
"ALGO:default"), writes them to RESULTS/SUITE-ablations-ENV/metrics.csv
(`mgjax.run.outputs.concat_metrics`: columns of earlier versions under their current names)
and draws the learning curves, alignment curves and the milestone table there
(`mgjax.analysis.curves`).
"""

import sys
from pathlib import Path

from mgjax import extras
from mgjax.analysis import curves
from mgjax.run import outputs
from mgjax.run.cli import Parser


def gather(
  results: Path,
  suite: str,
  algo: str,
  env: str,
  references: tuple[str, ...] = (),
  out: Path | None = None,
) -> tuple[Path, list[str]]:
  cells = [("default", results / suite / f"{algo}-{env}")]
  refs = {f"{ref}-{env}": ref for ref in references}
  for d in sorted(results.glob(f"{suite}-*/{algo}-{env}")):
    tag = d.parent.name[len(suite) + 1 :]
    if not tag.startswith("ablations"):
      cells.append((tag, d))
  out = out or results / f"{suite}-ablations-{env}"
  out.mkdir(parents=True, exist_ok=True)
  cells += [(None, results / suite / cell) for cell in refs]
  found = [(tag, d) for tag, d in cells if (d / "metrics.csv").is_file()]
  # References keep their own name; tagged cells become ALGO:TAG.
  names = [f"{algo}:{tag}" if tag else refs[d.name] for tag, d in found]
  if not outputs.concat_metrics(
    ((d / "metrics.csv", {"algo": name}) for (_, d), name in zip(found, names)), out / "metrics.csv"
  ):
    raise FileNotFoundError(f"no {algo}-{env} cells under {results}/{suite}*")
  return out, names


def main(argv=None) -> int:
  p = Parser(description=__doc__)
  p.add_argument("--results", default="results")
  p.add_argument("--suite", default="cpu")
  p.add_argument("--env", default="hopper")
  p.add_argument("--algo", default="mg")
  p.add_argument(
    "--reference",
    action="append",
    default=[],
    help="also draw this algorithm's cell of the suite (e.g. mle)",
  )
  p.add_argument("--out", default=None, help="output folder (default RESULTS/SUITE-ablations-ENV)")
  args = p.parse_args(argv)
  extras.require("matplotlib", "plotting", p)
  try:
    out, names = gather(
      Path(args.results),
      args.suite,
      args.algo,
      args.env,
      tuple(args.reference),
      args.out and Path(args.out),
    )
  except FileNotFoundError as e:
    p.error(str(e))
  data = curves.load(out / "metrics.csv")
  curves.plot_learning_curves(
    data, out, "return", "eval return (IQM, 95% CI)", name="learning_curves.png"
  )
  curves.plot_learning_curves(
    data, out, "cosine", "cos(ĝ_M, g_R) (IQM, 95% CI)", name="alignment.png"
  )
  curves.table(data, out)
  print(f"{len(names)} cells ({', '.join(names)}) -> {out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
