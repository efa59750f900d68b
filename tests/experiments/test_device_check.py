"""experiments/device_check.py's CPU rehearsal (`lab.device_check`): tiny pointmass
runs of every algorithm with finite metrics, and parts that fail or outrun their limit
recorded without stopping the others."""

import json
import subprocess
import sys

import pytest
from paths import ROOT

from mgjax.algorithms import REGISTRY, run_schedule
from mgjax.run import compile_cache
from mgjax.run.placement import cpu_devices

sys.path.insert(0, str(ROOT / "experiments"))
from lab import device_check  # noqa: E402
from lab.suites import SUITES  # noqa: E402


def test_a_part_past_its_limit_is_recorded_and_the_next_part_runs(tmp_path):
  # Each part in a process of its own: the platform part is killed after 1 s (while JAX is
  # still loading), then sac's part compiles and runs a few iterations.
  out = tmp_path / "check.json"
  logged = []
  record = device_check.check(
    out,
    cpu=True,
    isolate=True,
    precision="default",  # the CPU mode's test below: it finds sac's programs compiled
    only=("platform", "sac"),
    limits={"platform": 1.0},
    log=logged.append,
  )
  assert json.loads(out.read_text()) == json.loads(json.dumps(record, default=str))
  assert record["parts"]["platform"]["status"] == "timeout", record
  sac = record["parts"]["sac"]
  assert sac["status"] == "ok", sac
  assert sac["finite"] and sac["iterations"] >= 1 and sac["s_per_1000_env_steps"] > 0
  assert sac["compile_init_s"] > 0 and sac["compile_iteration_s"] > 0
  assert record["algorithms"] == {"sac": "ok"}
  assert any("platform: timeout" in line for line in logged)


def test_a_failing_part_is_recorded_with_one_line(tmp_path, monkeypatch):
  def broken(emit, deadline):
    emit({"backend": "cpu", "matmul_precision": "highest"})
    raise RuntimeError("no devices\nmore detail")

  def quick(emit, deadline):
    return {"algo": "mg", "finite": True, "wall_s": 1.0}

  real = device_check.parts
  monkeypatch.setattr(
    device_check,
    "parts",
    lambda cpu: [
      p._replace(fn={"platform": broken, "mg": quick}.get(p.name, p.fn)) for p in real(cpu)
    ],
  )
  before = compile_cache.settings()
  record = device_check.check(
    tmp_path / "check.json", cpu=True, only=("platform", "mg"), log=lambda *_: None
  )
  # In this process, the caller's cache settings and programs' folder are put back.
  assert compile_cache.settings() == before
  platform = record["parts"]["platform"]
  assert platform["status"] == "failed" and platform["error"] == "RuntimeError: no devices"
  assert platform["matmul_precision"] == "highest"  # what it measured before failing is kept
  assert record["parts"]["mg"]["status"] == "ok"  # the part after it ran
  assert record["algorithms"] == {"mg": "ok"}


@pytest.mark.slow
def test_cpu_mode_runs_every_algorithm(tmp_path):
  out = tmp_path / "check.json"
  proc = subprocess.run(
    [
      sys.executable,
      "experiments/device_check.py",
      "--cpu",
      "--out",
      str(out),
      "--precision",
      "default",  # the smoke suite's, whose cells' programs the check's parts share
    ],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=900,
  )
  assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
  record = json.loads(out.read_text())
  assert record["algorithms"] == {algo: "ok" for algo in ("mg", "mbpo", "sac")} | {
    algo: "ok" for algo in REGISTRY if algo not in ("mg", "mbpo", "sac")
  }
  assert set(record["algorithms"]) == set(REGISTRY)
  platform = record["parts"]["platform"]
  # "default" set explicitly: jax's own setting is None.
  assert platform["backend"] == "cpu" and platform["matmul_precision"] == "default"
  assert platform["versions"]["jax"]
  # The CPU split as benchmark.py splits it for the smoke suite's 2 seeds.
  assert len(platform["devices"]) == max(cpu_devices(a, device_check.CPU_SEEDS) for a in REGISTRY)
  mg = record["parts"]["mg"]
  assert mg["compile_s"] > 0 and mg["wall_s_for_all_steps"] >= mg["wall_s"] > 0
  smoke_mg = SUITES["smoke"].config("mg", "pointmass", {})
  assert mg["env_steps_per_seed"] == run_schedule(smoke_mg).env_steps
  for algo in set(REGISTRY) - set(device_check.TIMED):  # one chunk each, then a pause
    got = record["parts"]["smoke"][algo]
    config = SUITES["smoke"].config(algo, "pointmass", {})
    assert got["run_status"] == "paused" and got["seeds"] == 2, (algo, got)
    first_chunk = run_schedule(config).initial_steps + config.eval_every * config.batch_steps
    assert got["env_steps_per_seed"] == first_chunk and all(got["finite"].values()), (algo, got)
  for algo in ("mbpo", "sac"):
    assert record["parts"][algo]["s_per_1000_env_steps"] > 0


def test_bad_input_is_one_line_exit_2(tmp_path):
  proc = subprocess.run(
    [
      sys.executable,
      "experiments/device_check.py",
      "--cpu",
      "--budget",
      "0",
      "--out",
      str(tmp_path / "x.json"),
    ],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=120,
  )
  lines = [line for line in proc.stderr.splitlines() if line.strip()]
  assert proc.returncode == 2 and len(lines) == 1 and "budget=0.0" in lines[0], proc.stderr
  assert not (tmp_path / "x.json").exists()
