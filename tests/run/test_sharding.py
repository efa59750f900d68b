"""Runs sharded over a device mesh and vmapped hyperparameter sweeps.

The CLI runs go through subprocesses with XLA_FLAGS=--xla_force_host_platform_device_count=4,
which gives the process 4 CPU devices (the flag must be set before jax starts). A run's
numbers depend only on how many runs share a device: XLA compiles a per-device batch of 1
and a batch of 4 into different kernels, whose float32 roundings differ in the last bits and
are then amplified by training (an eval episode that ends one step earlier). So runs with the
same per-device layout must agree exactly, and a sharded run and an unsharded one agree to
float tolerance after the first iterations.
"""

import csv
import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from chunked import POINTMASS, with_flags
from inprocess import run_main
from paths import ROOT

from mgjax import make_trainer
from mgjax.config import Config
from mgjax.run.placement import cpu_devices, cpu_layout, default_devices

TRAIN = str(ROOT / "experiments" / "train.py")

# pointmass ppo: 2 evaluation chunks of 2 iterations x 256 env steps. The mesh, the sweep and
# the processes are the runner's, the same for every algorithm: ppo's program compiles in a
# third of mg's time. mg on the CPU's default split is run by test_cli's pointmass runs and
# the smoke suite (tests/experiments/test_benchmark.py).
SMALL = ("--algo", "ppo", *with_flags(POINTMASS, total_steps=1024, num_envs=8, eval_every=2))
# mg's settings, for the errors of its sweepable fields (found before anything compiles).
SMALL_MG = ("--algo", "mg", *SMALL[2:])
LOSSES = ("policy_loss", "value_loss", "entropy")


def train_cli(*args):
  """train.py on a CPU split into 4 devices."""
  env = dict(os.environ, PYTHONPATH=str(ROOT), XLA_FLAGS="--xla_force_host_platform_device_count=4")
  return subprocess.run(
    [sys.executable, TRAIN, *map(str, args)],
    cwd=ROOT,
    env=env,
    capture_output=True,
    text=True,
    timeout=900,
  )


def rows(path: Path) -> dict[tuple[int, int], dict[str, str]]:
  with open(path / "metrics.csv", newline="") as f:
    return {(int(r["seed"]), int(r["iteration"])): r for r in csv.DictReader(f)}


def values(r: dict[str, str], names) -> np.ndarray:
  return np.array([float(r[n]) for n in names])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  base = tmp_path_factory.mktemp("sharding")
  out = {}
  cases = {
    "sharded4": ("--seeds", "4"),  # 1 run per device
    "unsharded": ("--seeds", "4", "--devices", "1"),  # 4 runs on one device
    "seeds23_on2": ("--seeds", "2", "--seed", "2", "--devices", "2"),
    "sweep": ("--seeds", "2", "--sweep", "learning_rate=0.0003,0.001"),  # 2 x 2 runs on 4 devices
    "lr_0.0003": ("--seeds", "2", "--devices", "2", "--learning-rate", "0.0003"),
  }
  # The CLI's own split of the CPU (no XLA_FLAGS) is checked on test_cli's pointmass runs.
  for name, args in cases.items():
    proc = train_cli(*SMALL, *args, "--out", base / name)
    assert proc.returncode == 0, (name, proc.stderr[-3000:])
    out[name] = (base / name, proc)
  return out


@pytest.mark.slow
def test_runs_report_their_device_layout(runs):
  for name, devices in (("sharded4", 4), ("unsharded", 1), ("seeds23_on2", 2)):
    path, proc = runs[name]
    assert f"on {devices} device(s)" in proc.stdout, proc.stdout
    summary = json.loads((path / "summary.json").read_text())
    assert summary["devices"] == devices and summary["processes"] == 1


def assert_close_to_unsharded(sharded, unsharded):
  """Metrics of the 4 SMALL seeds sharded and unsharded agree to float tolerance."""
  assert sharded.keys() == unsharded.keys() and len(sharded) == 4 * 2
  for key in sharded:
    a, b = sharded[key], unsharded[key]
    assert a["env_steps"] == b["env_steps"]
    if key[1] == 2:  # the first evaluation: only rounding apart
      np.testing.assert_allclose(values(a, LOSSES), values(b, LOSSES), rtol=1e-4, atol=1e-6)
      np.testing.assert_allclose(float(a["eval_return"]), float(b["eval_return"]), rtol=2e-2)
  # Same seeds, same training: the final returns stay close over all seeds.
  final = lambda r: np.array([float(r[(s, 4)]["eval_return"]) for s in range(4)])
  np.testing.assert_allclose(final(sharded).mean(), final(unsharded).mean(), rtol=0.1)


@pytest.mark.slow
def test_sharded_run_matches_unsharded_to_float_tolerance(runs):
  assert_close_to_unsharded(rows(runs["sharded4"][0]), rows(runs["unsharded"][0]))


@pytest.mark.parametrize(
  "runs_, cores, devices",
  [
    (1, 2, 1),
    (2, 2, 2),
    (4, 2, 2),
    (5, 2, 5),
    (6, 2, 2),
    (3, 2, 3),
    (97, 2, 1),
    (5, 16, 5),
    (32, 16, 16),
    (24, 16, 24),
    (10, 4, 5),
  ],
)
def test_cpu_layout_gives_every_core_a_device_and_splits_the_runs_evenly(runs_, cores, devices):
  assert cpu_layout(runs_, cores) == devices


def test_cpu_layout_always_divides_the_runs():
  for cores in range(1, 17):
    for n in range(1, 65):
      d = cpu_layout(n, cores)
      assert n % d == 0 and 1 <= d <= 4 * cores, (n, cores, d)


def test_the_sac_family_stays_on_one_cpu_device_by_default():
  # Measured slower split over the cores (RESULTS.md, "Every core for several runs").
  for cores in (2, 16):
    assert cpu_devices("mg", 4, cores) == cpu_layout(4, cores) > 1
    for algo in ("mbpo", "mg-sac", "sac"):
      assert cpu_devices(algo, 4, cores) == 1
  # In a process whose CPU is split for other runs (benchmark.py's cells).
  assert default_devices("mg") is None and default_devices("ppo") is None
  assert {default_devices(a) for a in ("mbpo", "mg-sac", "sac")} == {1}


@pytest.mark.slow
def test_a_run_does_not_depend_on_the_other_runs_on_the_mesh(runs):
  # Seeds 2 and 3, one per device, alone on 2 devices or next to seeds 0 and 1 on 4: identical.
  alone, together = rows(runs["seeds23_on2"][0]), rows(runs["sharded4"][0])
  assert len(alone) == 4
  for key, r in alone.items():
    assert {k: v for k, v in r.items() if k != "wall_time_s"} == {
      k: v for k, v in together[key].items() if k != "wall_time_s"
    }, key


@pytest.mark.slow
def test_sweep_writes_each_setting_and_matches_separate_runs(runs):
  path, proc = runs["sweep"]
  top = json.loads((path / "config.json").read_text())
  assert top["sweep"] == {"learning_rate": [0.0003, 0.001]}
  assert "learning_rate=0.0003: final eval return" in proc.stdout
  for value, name in ((0.0003, "learning_rate=0.0003"), (0.001, "learning_rate=0.001")):
    d = path / name
    config = json.loads((d / "config.json").read_text())
    assert config["learning_rate"] == value and config["sweep"] == {"learning_rate": value}
    summary = json.loads((d / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["sweep"] == {"learning_rate": value}
    assert set(summary["final_eval_return"]) == {"0", "1"}
    assert len(rows(d)) == 2 * 2
  assert (path / "checkpoint").is_dir()
  # The lr = 0.0003 member equals a separate --learning-rate 0.0003 run of the same layout.
  swept, separate = rows(path / "learning_rate=0.0003"), rows(runs["lr_0.0003"][0])
  for key, r in separate.items():
    assert {k: v for k, v in r.items() if k != "wall_time_s"} == {
      k: v for k, v in swept[key].items() if k != "wall_time_s"
    }, key
  # ... and the two settings really differ.
  other = rows(path / "learning_rate=0.001")
  assert any(swept[k]["policy_loss"] != other[k]["policy_loss"] for k in swept)


@pytest.mark.slow
def test_a_sweep_settings_folder_loads_its_own_policy(runs):
  # The swept lr = 0.0003 runs equal the separate --learning-rate 0.0003 runs (above), so their
  # policies do; the other setting's differ. The sweep's own folder names its settings.
  import mgjax
  from mgjax.run import OutputError

  sweep, separate = runs["sweep"][0], runs["lr_0.0003"][0]
  obs = jnp.array([[0.5, -0.3, 0.2, 0.1], [-1.0, 0.4, 0.0, -0.2]])
  for seed in (0, 1):
    swept = mgjax.load_policy(sweep / "learning_rate=0.0003", seed=seed)(obs)
    np.testing.assert_array_equal(swept, mgjax.load_policy(separate, seed=seed)(obs))
    assert not np.array_equal(
      swept, mgjax.load_policy(sweep / "learning_rate=0.001", seed=seed)(obs)
    )
  with pytest.raises(
    OutputError,
    match="a sweep of 2 settings; load one setting's folder "
    r"\(learning_rate=0.0003, learning_rate=0.001\)",
  ):
    mgjax.load_policy(sweep)


def _free_port() -> int:
  import socket

  with socket.socket() as sock:
    sock.bind(("localhost", 0))
    return sock.getsockname()[1]


@pytest.mark.slow
def test_two_processes_give_the_single_process_results(runs, tmp_path):
  # Multi-host on one machine: 2 processes x 2 CPU devices form the 4-device mesh through
  # jax.distributed; process 0 alone writes the files, which equal the 4-device run's.
  out = tmp_path / "run"
  address = f"localhost:{_free_port()}"
  env = dict(os.environ, PYTHONPATH=str(ROOT), XLA_FLAGS="--xla_force_host_platform_device_count=2")
  procs = [
    subprocess.Popen(
      [
        sys.executable,
        TRAIN,
        *SMALL,
        "--seeds",
        "4",
        "--out",
        str(out),
        "--distributed",
        "--coordinator-address",
        address,
        "--num-processes",
        "2",
        "--process-id",
        str(i),
      ],
      cwd=ROOT,
      env=env,
      stdout=subprocess.PIPE,
      stderr=subprocess.PIPE,
      text=True,
    )
    for i in range(2)
  ]
  results = [p.communicate(timeout=900) for p in procs]
  for p, (_, err) in zip(procs, results):
    assert p.returncode == 0, err[-3000:]
  summary = json.loads((out / "summary.json").read_text())
  assert summary["devices"] == 4 and summary["processes"] == 2
  single = rows(runs["sharded4"][0])
  for key, r in rows(out).items():
    assert {k: v for k, v in r.items() if k != "wall_time_s"} == {
      k: v for k, v in single[key].items() if k != "wall_time_s"
    }, key


# The layout errors need the 4 devices of a process of its own; the sweep's are found before
# the layout, so main() runs in this process (tests/inprocess.py).
@pytest.mark.parametrize(
  "args, expected, layout",
  [
    (("--seeds", "3"), "seeds=3: 3 seeds = 3 runs do not split evenly over 4 devices", True),
    (("--seeds", "2", "--sweep", "mle_weight=1,2,3"), "seeds=2: 2 seeds x 3 sweep settings", True),
    (("--devices", "8"), "devices=8: choose 1..4", True),
    (("--sweep", "num_envs=4,8"), "sweep='num_envs': not sweepable for algo='mg'", False),
    (("--sweep", "mle_weight=a"), "sweep='mle_weight=a': values must be comma-separated", False),
    (("--sweep", "mle_weight=-1", "--seeds", "4"), "mle_weight=-1.0: must be non-negative", False),
  ],
)
def test_layout_and_sweep_errors_are_one_line_exit_2(tmp_path, args, expected, layout):
  run = train_cli if layout else functools.partial(run_main, TRAIN)
  proc = run(*SMALL_MG, *args, "--out", tmp_path / "run")
  assert proc.returncode == 2, proc.stderr[-2000:]
  lines = [line for line in proc.stderr.splitlines() if line.strip()]
  assert len(lines) == 1 and expected in lines[0], proc.stderr
  assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_swept_learning_rate_is_data_in_the_optimizer_state():
  # ppo with learning rates 0 and 1e-3 vmapped in one program: the lr = 0 run keeps its
  # initial parameters, the other moves; each optimizer state holds its own rate.
  config = Config(
    algo="ppo",
    env="pointmass",
    total_steps=128,
    num_envs=4,
    rollout_length=16,
    eval_every=2,
    num_eval_envs=2,
    policy_hidden=(8,),
    value_hidden=(8,),
    num_minibatches=2,
  )
  trainer = make_trainer(config)
  keys = jax.random.split(jax.random.key(0), 2)
  lrs = {"learning_rate": jnp.array([0.0, 1e-3])}
  state = jax.jit(jax.vmap(trainer.init))(keys, lrs)
  new, _ = jax.jit(jax.vmap(trainer.chunk))(state)
  moved = [
    np.abs(np.asarray(a) - np.asarray(b)).max(axis=tuple(range(1, np.ndim(a))))
    for a, b in zip(jax.tree.leaves(new.agent_params), jax.tree.leaves(state.agent_params))
  ]
  moved = np.max(moved, axis=0)
  assert moved[0] == 0.0 and moved[1] > 1e-4, moved
  np.testing.assert_allclose(new.agent_opt.hyperparams["learning_rate"], [0.0, 1e-3])
  np.testing.assert_allclose(new.hparams["learning_rate"], [0.0, 1e-3])
  with pytest.raises(ValueError, match="not sweepable"):
    trainer.init(keys[0], {"mle_weight": 0.5})  # ppo has no model


def test_benchmark_checks_the_layout_before_running(tmp_path):
  env = dict(os.environ, PYTHONPATH=str(ROOT), XLA_FLAGS="--xla_force_host_platform_device_count=4")
  proc = subprocess.run(
    [
      sys.executable,
      str(ROOT / "experiments" / "benchmark.py"),
      "--suite",
      "smoke",
      "--seeds",
      "3",
      "--results",
      str(tmp_path / "res"),
      "--runs",
      str(tmp_path / "runs"),
    ],
    cwd=ROOT,
    env=env,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert proc.returncode == 2, proc.stderr[-2000:]
  lines = [line for line in proc.stderr.splitlines() if line.strip()]
  assert len(lines) == 1 and "seeds=3" in lines[0] and "4 devices" in lines[0], proc.stderr
  assert not (tmp_path / "runs").exists()
