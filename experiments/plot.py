"""Plots and tables from a benchmark suite's metrics.csv, or from run folders: the
`mgjax plot` command (mgjax/cli/plot.py), run from a source checkout;
`python experiments/plot.py --help` describes it.
"""

import sys

from mgjax.cli import plot


def main(argv=None) -> int:
  return plot.main(argv)


if __name__ == "__main__":
  sys.exit(main())
