"""Code run in a fresh interpreter in which some packages cannot be imported: the light core
without the framework's heavy parts (tests/test_light_core.py), mgjax without its optional
extras (tests/test_extras.py)."""

import os
import subprocess
import sys

from paths import ROOT


def blocker(names) -> str:
  """Code that, run first, makes an import of any of `names` (or of a submodule) raise
  ImportError("blocked: NAME")."""
  return f"""
import sys

class _Blocker:
  def find_spec(self, name, path=None, target=None):
    if name.split(".")[0] in {tuple(names)!r}:
      raise ImportError("blocked: " + name)
    return None

sys.meta_path.insert(0, _Blocker())
"""


def run_without(names, code: str, timeout: float, cwd=ROOT) -> subprocess.CompletedProcess:
  """`python -c CODE` in `cwd` (this checkout's mgjax importable), with `names` blocked."""
  return subprocess.run(
    [sys.executable, "-c", blocker(names) + code],
    cwd=cwd,
    env={**os.environ, "PYTHONPATH": str(ROOT)},
    capture_output=True,
    text=True,
    timeout=timeout,
    check=False,
  )
