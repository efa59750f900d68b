"""tests/compile_profile.py: its hook logs each compiled program once as a miss with its
compile time, and as a hit when the next process loads it from the cache; the summary adds
them up per test."""

import json
import os
import subprocess
import sys

import compile_profile

PROGRAM = "import jax, jax.numpy as jnp; jax.jit(lambda x: jnp.sin(x) * 2)(jnp.ones(3))"


def test_hook_logs_misses_then_hits_and_the_summary_adds_them_up(tmp_path):
  site = tmp_path / "site"
  site.mkdir()
  # The hook as the sitecustomize of a folder on PYTHONPATH, instead of the user's site.
  (site / "sitecustomize.py").write_text(compile_profile.HOOK)
  log = tmp_path / "compiles.jsonl"
  env = dict(
    os.environ,
    PYTHONPATH=str(site),
    MGJAX_COMPILE_PROFILE=str(log),
    PYTEST_CURRENT_TEST="tests/test_x.py::test_y (call)",
    JAX_COMPILATION_CACHE_DIR=str(tmp_path / "cache"),
    JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
  )
  for _ in range(2):
    proc = subprocess.run([sys.executable, "-c", PROGRAM], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
  rows = [json.loads(line) for line in log.read_text().splitlines()]
  name = "jit__lambda"
  first, second = (
    {r["kind"] for r in rows if r["name"] == name and r["pid"] == p}
    for p in dict.fromkeys(r["pid"] for r in rows)
  )
  assert (first, second) == ({"miss"}, {"hit"})
  assert all(r["test"] == "tests/test_x.py::test_y (call)" and r["s"] >= 0 for r in rows)
  text = compile_profile.summary(str(log))
  assert text.startswith(f"compiled: {sum(r['kind'] == 'miss' for r in rows)} programs")
  assert "tests/test_x.py::test_y" in text and name in text
  # Without the variable the hook does nothing.
  log.unlink()
  del env["MGJAX_COMPILE_PROFILE"]
  subprocess.run([sys.executable, "-c", PROGRAM], env=env, check=True, capture_output=True)
  assert not log.exists()
