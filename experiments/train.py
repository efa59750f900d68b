"""Train an algorithm on a Brax (MJX) environment, seeds vmapped: the `mgjax train` command
(mgjax/cli/train.py), run from a source checkout. `python experiments/train.py --help`
lists its flags.
"""

import sys

from mgjax.cli import train


def main(argv=None) -> int:
  return train.main(argv)


if __name__ == "__main__":
  sys.exit(main())
