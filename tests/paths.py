"""Where the tests find the checkout, whatever folder of tests/ a test file sits in: ROOT, the
repository's root, and DATA, tests/data."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
