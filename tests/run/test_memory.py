"""The memory check before compiling (`mgjax.run.memory`): the estimate of the runs' state
against the state itself, the one-line refusal naming the fields that set the size, and
train.py's refusal and --dry-run, both before anything compiles or --out is touched."""

import subprocess
import sys
import time

import jax
import pytest
from paths import ROOT
from tiny import MBPO, PPO_FAMILY  # tests/run/test_resume.py's mbpo run, test_mg's tiny runs

from mgjax.algorithms import make_config, make_trainer
from mgjax.run import MemoryCheckError, make_mesh, memory

MG = dict(PPO_FAMILY, algo="mg")


def _train(*args, timeout=300):
  return subprocess.run(
    [sys.executable, "experiments/train.py", *map(str, args)],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=timeout,
  )


@pytest.mark.parametrize("fields", [MBPO, MG], ids=["mbpo", "mg"])
def test_estimate_matches_the_initialised_state(fields):
  trainer = make_trainer(make_config(**fields))
  est = memory.estimate(trainer, make_mesh(1), seeds=2)
  state = jax.jit(jax.vmap(trainer.init))(jax.random.split(jax.random.key(0), 2))
  measured = sum(x.nbytes for x in jax.tree.leaves(state))  # the device arrays
  assert abs(2 * est["state_per_run"] - measured) <= 0.3 * measured
  assert 2 * est["state_per_run"] == measured  # eval_shape gives the exact shapes
  sizes, _ = memory.state_components(state)
  assert {k: v // 2 for k, v in sizes.items()} == est["per_run"]
  assert est["per_run"]["real buffer"] == sum(x.nbytes for x in jax.tree.leaves(state.buffer)) // 2
  # Twice the state (a chunk's input and output) plus the rollouts' step, on the host.
  rollout = sum(est["transient_per_run"].values())
  assert est["need_bytes"] == 2 * (2 * est["state_per_run"] + rollout)
  assert (rollout > 0) == (fields["algo"] == "mbpo")


def test_refusal_is_one_line_naming_the_fields_that_set_the_size(monkeypatch):
  trainer = make_trainer(make_config(**{**MBPO, "rollout_batch": 20_000}))
  monkeypatch.setattr(memory, "available", lambda mesh: (2**20, "the host"))
  est = memory.estimate(trainer, make_mesh(1), seeds=3, settings=2, sweep=("sac_learning_rate",))
  assert est["runs"] == 6 and not memory.fits(est)
  with pytest.raises(MemoryCheckError) as raised:
    memory.check(est)
  line = str(raised.value)
  assert "\n" not in line
  # The runs, then the fields of the rollouts' step and the model buffer, the largest parts.
  assert line.startswith("seeds=3, sweep=2 settings, rollout_batch=20000, "), line
  assert "branch_schedule=(0, 1, 1, 3)" in line
  assert f"needs ~{memory.size(est['need_bytes'])}, the host has 1 MiB available" in line
  report = memory.report(est)
  for part in memory.COMPONENTS + ("rollout step (temporary)", "total", "does not fit"):
    assert part in report, report
  monkeypatch.setattr(memory, "available", lambda mesh: (None, "the host"))
  assert memory.fits(memory.estimate(trainer, make_mesh(1), seeds=3))  # unknown: not refused


def test_host_memory_is_read_from_meminfo():
  assert memory._host_available("MemTotal: 100 kB\nMemAvailable:    2048 kB\n") == 2 * 2**20


def test_train_refuses_mbpo_hopper_64_seeds_before_compiling(tmp_path):
  available, _ = memory.available(make_mesh(1))
  if available is not None and available > 150 * 2**30:
    pytest.skip(f"the host has {memory.size(available)} available: 64 mbpo seeds may fit")
  out = tmp_path / "run"
  out.mkdir()
  (out / "keep.txt").write_text("an earlier run")
  start = time.time()
  proc = _train("--algo", "mbpo", "--env", "hopper", "--seeds", "64", "--out", out, "--overwrite")
  elapsed = time.time() - start
  lines = [line for line in proc.stderr.splitlines() if line.strip()]
  assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-3000:]
  assert lines[0].startswith("train.py: error: seeds=64, rollout_batch=100000"), lines[0]
  assert "GiB, the host has" in lines[0] and "available" in lines[0]
  assert elapsed < 60, elapsed
  assert "compiled" not in proc.stdout
  assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]  # --out untouched


def test_dry_run_prints_the_estimate_and_writes_nothing(tmp_path):
  out = tmp_path / "run"
  flags = [
    f"--{k.replace('_', '-')}={','.join(map(str, v)) if isinstance(v, tuple) else v}"
    for k, v in MBPO.items()
  ]
  proc = _train(*flags, "--seeds", "2", "--dry-run", "--out", out)
  assert proc.returncode == 0, proc.stderr[-3000:]
  for part in memory.COMPONENTS + ("state x 2", "rollout step (temporary)", "total", "fits"):
    assert part in proc.stdout, proc.stdout
  assert "2 run(s)" in proc.stdout and "compiled" not in proc.stdout
  assert not out.exists()
