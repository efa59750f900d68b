"""How much the MG term moves the model, over whole runs: the distribution of the MG step's
metrics in metrics.csv files (`mgjax.models.fitting.MG_FIT_METRICS`, the alignments, the
held-out NLL).

  python experiments/step_share.py results/cpu-step-share/mg-hopper \
      results/cpu-full-strength/mg-hopper --out results/cpu-full-strength/step_share.json

Each metrics.csv row is one evaluation chunk of one seed, its per-iteration metrics averaged
over the chunk's iterations; a cell's distribution is over its rows (every seed, every
chunk), printed as median [10th, 90th percentile], for the whole run and for each third of
its env steps.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from mgjax.models.fitting import MG_FIT_METRICS
from mgjax.run.outputs import read_metrics

METRICS = (
  *(m for m in MG_FIT_METRICS if m != "mg_loss"),
  "model_grad_cosine",
  "model_grad_cosine_heldout",
  "model_nll",
)


def _values(rows, name) -> np.ndarray:
  v = np.array([float(r[name]) if r.get(name, "") != "" else np.nan for r in rows])
  return v[np.isfinite(v)]


def distribution(rows: list[dict], name: str) -> dict | None:
  """{"median", "p10", "p90", "mean", "n"} of a metric over rows; None where it has no value."""
  v = _values(rows, name)
  if not v.size:
    return None
  p10, med, p90 = np.percentile(v, [10, 50, 90])
  return {"median": med, "p10": p10, "p90": p90, "mean": float(np.mean(v)), "n": int(v.size)}


def summarize(folder: Path) -> dict:
  """Per metric: its distribution over the whole run and over each third of its env steps."""
  rows = read_metrics(folder / "metrics.csv")
  steps = np.array([int(r["env_steps"]) for r in rows])
  edges = np.linspace(0, steps.max(), 4)
  thirds = [[r for r, s in zip(rows, steps) if lo < s <= hi] for lo, hi in zip(edges, edges[1:])]
  return {
    "cell": str(folder),
    "seeds": sorted({int(r["seed"]) for r in rows}),
    "env_steps": int(steps.max()),
    "all": {m: distribution(rows, m) for m in METRICS},
    "thirds": [{m: distribution(part, m) for m in METRICS} for part in thirds],
  }


def _cell(d: dict | None) -> str:
  if d is None:
    return ""
  fmt = lambda x: f"{x:.3g}"
  return f"{fmt(d['median'])} [{fmt(d['p10'])}, {fmt(d['p90'])}]"


def table(results: list[dict]) -> str:
  lines = [
    "| cell | part | " + " | ".join(METRICS) + " |",
    "|---|---|" + "---|" * len(METRICS),
  ]
  for res in results:
    parts = [("all", res["all"])] + [(f"third {i + 1}", t) for i, t in enumerate(res["thirds"])]
    for label, part in parts:
      cells = " | ".join(_cell(part[m]) for m in METRICS)
      lines.append(f"| {res['cell']} | {label} | {cells} |")
  return "\n".join(lines)


def main(argv=None) -> int:
  p = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  p.add_argument("cells", nargs="+", help="folders with a metrics.csv")
  p.add_argument("--out", default=None, help="also write the distributions as JSON here")
  args = p.parse_args(argv)
  for c in args.cells:
    if not (Path(c) / "metrics.csv").is_file():
      print(f"error: cells={c!r}: no metrics.csv in this folder", file=sys.stderr)
      return 2
    if not read_metrics(Path(c) / "metrics.csv"):
      print(f"error: cells={c!r}: its metrics.csv has no rows yet", file=sys.stderr)
      return 2
  results = [summarize(Path(c)) for c in args.cells]
  print(table(results))
  if args.out:
    Path(args.out).write_text(json.dumps(results, indent=1, default=float) + "\n")
  return 0


if __name__ == "__main__":
  sys.exit(main())
