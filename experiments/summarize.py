"""The headline figures of RESULTS.md from a suite's metrics.csv and table.csv
(`mgjax.analysis.curves.headline`).

  python experiments/plot.py results/cpu && python experiments/summarize.py results/cpu

Writes SUITE/headline.json and prints: MG/MLE and MG/PPO IQM ratios at the last milestone
per env; cos(ĝ_M, g_R) averaged over training (per seed, then mean ± s.e. over seeds); the
aggregate normalised IQM [95% CI] at the last common evaluation; the env steps each
algorithm needs to reach mle's final IQM return, and the return each holds over the last
quarter of mle's run (per seed the mean over those evaluations; IQM [95% CI], and the IQM
difference to mle [95% CI]), both for the long runs' convergence question.
"""

import json
import sys
from pathlib import Path

from mgjax.analysis import curves
from mgjax.run.cli import Parser


def main(argv=None) -> int:
  p = Parser(description=__doc__)
  p.add_argument("suite_dir")
  args = p.parse_args(argv)
  suite = Path(args.suite_dir)
  if not (suite / "table.csv").is_file():
    p.error(f"suite_dir={args.suite_dir!r}: no table.csv (run plot.py)")
  out = curves.headline(suite)
  (suite / "headline.json").write_text(json.dumps(out, indent=2) + "\n")
  print(json.dumps(out, indent=1))
  return 0


if __name__ == "__main__":
  sys.exit(main())
