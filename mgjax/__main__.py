"""`python -m mgjax train|evaluate|plot ...`: the `mgjax` command line (`mgjax.cli`)."""

import sys

from mgjax.cli import main

if __name__ == "__main__":
  sys.exit(main(launcher="python -m mgjax"))
