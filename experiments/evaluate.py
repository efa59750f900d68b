"""Evaluate a trained run's policy, and render an episode to a video or a 3D page: the
`mgjax evaluate` command (mgjax/cli/evaluate.py), run from a source checkout;
`python experiments/evaluate.py --help` describes it.
"""

import sys

from mgjax.cli import evaluate


def main(argv=None) -> int:
  return evaluate.main(argv)


if __name__ == "__main__":
  sys.exit(main())
