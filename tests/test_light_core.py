"""The light core: the losses and estimators import without the framework's heavy parts, the
package's names load lazily, and the example of using the MG loss in other code runs on the
light core alone."""

import re
import subprocess

import pytest
from blocked import run_without

import mgjax

HEAVY = ("brax", "mujoco", "orbax", "matplotlib", "tensorboardX", "imageio")


def _run(code: str, timeout: float) -> subprocess.CompletedProcess:
  """`code` in a fresh interpreter that refuses the heavy packages."""
  return run_without(HEAVY, code, timeout)


def test_core_imports_without_the_heavy_packages():
  out = _run(
    f"""
import mgjax.model_gradient, mgjax.losses, mgjax.types
from mgjax import Model, Policy, model_gradient_loss, gae
loaded = sorted(m for m in sys.modules if m.split(".")[0] in {HEAVY!r})
assert not loaded, loaded
print("ok")
""",
    timeout=120,
  )
  assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_the_blocker_blocks():
  out = _run("import mgjax.envs", timeout=120)
  assert out.returncode != 0 and "blocked: brax" in out.stderr


def test_every_public_name_loads_lazily():
  for name in mgjax.__all__:
    assert getattr(mgjax, name) is not None, name
  assert set(mgjax.__all__) <= set(dir(mgjax))
  from mgjax import make_train, tanh_gaussian_policy  # noqa: F401

  assert mgjax.envs.make_env is not None  # submodules too, as before
  with pytest.raises(AttributeError, match="no_such_name"):
    getattr(mgjax, "no_such_name")


def test_example_alignment_rises_for_every_seed():
  """examples/mg_loss_in_your_code.py, on the light core alone: cos(ĝ_M, g_R) ends above
  where it started for each of its 3 seeds."""
  out = _run(
    "import runpy; runpy.run_path('examples/mg_loss_in_your_code.py', run_name='__main__')",
    timeout=300,
  )
  assert out.returncode == 0, out.stderr
  rows = re.findall(r"seed (\d+) alignment: initial ([-+.\d]+) final ([-+.\d]+)", out.stdout)
  assert len(rows) == 3, out.stdout
  for seed, initial, final in rows:
    assert float(final) > float(initial), (seed, initial, final)
