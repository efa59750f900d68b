"""The headline figures of RESULTS.md from a suite's metrics.csv and table.csv.

  python experiments/plot.py results/cpu && python experiments/summarize.py results/cpu

Writes SUITE/headline.json and prints: MG/MLE and MG/PPO IQM ratios at the last milestone
per env; cos(ĝ_M, g_R) averaged over training (per seed, then mean ± s.e. over seeds); the
aggregate normalised IQM [95% CI] at the last common evaluation.
"""
import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

import plot  # experiments/plot.py: this script's folder is on sys.path
from mgjax.stats import stratified_bootstrap_ci


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("suite_dir")
  args = p.parse_args(argv)
  suite = Path(args.suite_dir)
  if not (suite / "table.csv").is_file():
    print(f"summarize.py: error: suite_dir={args.suite_dir!r}: no table.csv (run plot.py)",
          file=sys.stderr)
    return 2
  with open(suite / "table.csv", newline="") as f:
    table = list(csv.DictReader(f))
  last = {}
  for r in table:
    key = (r["env"], r["algo"])
    if key not in last or int(r["milestone"]) > int(last[key]["milestone"]):
      last[key] = r
  envs = sorted({e for e, _ in last})
  ratios = {}
  for env in envs:
    iqm = {a: float(last[(env, a)]["iqm"]) for e, a in last if e == env}
    if "mg" in iqm:
      ratios[env] = {f"mg_over_{b}": iqm["mg"] / iqm[b] for b in ("mle", "ppo") if b in iqm}

  data = plot.load(suite / "metrics.csv")  # through mgjax.run.outputs.read_metrics
  alignment = {}
  for (env, algo), d in data.items():
    if not np.any(np.isfinite(d["cosine"])):  # no model (ppo)
      continue
    per_seed = np.nanmean(d["cosine"], axis=1)
    per_seed = per_seed[np.isfinite(per_seed)]
    if per_seed.size:
      alignment.setdefault(env, {})[algo] = {
          "mean": float(per_seed.mean()),
          "se": float(per_seed.std() / np.sqrt(per_seed.size))}
  aggregate = {}
  for algo, (steps, per_eval) in plot.normalised_scores(data).items():
    mid, lo, hi = stratified_bootstrap_ci(per_eval[-1], reps=2000)
    aggregate[algo] = {"env_steps": int(steps[-1]), "iqm": mid, "ci": [lo, hi]}

  out = {"ratios_at_last_milestone": ratios, "alignment_mean_over_training": alignment,
         "aggregate_normalised": aggregate}
  (suite / "headline.json").write_text(json.dumps(out, indent=2) + "\n")
  print(json.dumps(out, indent=1))
  return 0


if __name__ == "__main__":
  sys.exit(main())
