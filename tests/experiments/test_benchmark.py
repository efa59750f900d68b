"""The smoke benchmark suite runs end to end, resumes, and the plotting code renders it."""

import csv
import dataclasses
import functools
import itertools
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from inprocess import run_main
from paths import ROOT
from run_folder import check_outputs

from mgjax.algorithms import run_schedule
from mgjax.config import ConfigError
from mgjax.run import cli
from mgjax.run.placement import cpu_devices
from mgjax.stats import iqm, stratified_bootstrap_ci

sys.path.insert(0, str(ROOT / "experiments"))
from lab.suites import SUITES  # noqa: E402

SMOKE_ALGOS = ("mg", "mle", "ppo", "mbpo", "mg-sac", "sac")  # the smoke suite's cells


def _run(*args):
  # The session's compilation cache (conftest.py), not the user's.
  return subprocess.run(
    [sys.executable, *args],
    cwd=ROOT,
    capture_output=True,
    text=True,
    env={
      "PYTHONPATH": str(ROOT),
      "PATH": "/usr/bin:/bin",
      "JAX_COMPILATION_CACHE_DIR": os.environ["JAX_COMPILATION_CACHE_DIR"],
    },
  )


def test_iqm_by_hand():
  # n = 4: the middle two of (1, 2, 3, 100) -> 2.5; n = 8 -> mean of the 3rd..6th values.
  assert iqm(np.array([100.0, 1.0, 3.0, 2.0])) == 2.5
  assert iqm(np.arange(8.0)) == pytest.approx(np.mean([2, 3, 4, 5]))
  # n = 5: order statistics weighted 0.75, 1, 0.75 over the window [1.25, 3.75).
  assert iqm(np.array([0.0, 1.0, 2.0, 3.0, 40.0])) == pytest.approx((0.75 * 1 + 2 + 0.75 * 3) / 2.5)


def test_stratified_bootstrap_keeps_strata_and_covers_the_point():
  rng = np.random.default_rng(0)
  a, b = rng.normal(0.0, 1.0, 10), rng.normal(10.0, 1.0, 5)
  point, lo, hi = stratified_bootstrap_ci([a, b], statistic=np.mean, reps=500)
  assert point == pytest.approx(np.mean(np.concatenate([a, b])))
  assert lo < point < hi
  # Each replicate keeps 10 draws from a and 5 from b, so the mean stays near 10/3 + ...:
  # a plain bootstrap over the pooled 15 values would be far wider than this.
  assert hi - lo < 1.5
  # Identical seeds: no spread.
  assert stratified_bootstrap_ci([np.ones(4)], reps=50) == (1.0, 1.0, 1.0)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
  base = tmp_path_factory.mktemp("smoke")
  proc = _run(
    "experiments/benchmark.py",
    "--suite",
    "smoke",
    "--results",
    str(base / "res"),
    "--runs",
    str(base / "runs"),
  )
  assert proc.returncode == 0, proc.stderr[-2000:]
  return base, proc


@pytest.mark.slow
def test_smoke_suite_writes_every_cell(smoke):
  base, _ = smoke
  suite = base / "res" / "smoke"
  for algo in SMOKE_ALGOS:
    summary = json.loads((suite / f"{algo}-pointmass" / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["seeds"] == [0, 1]
    # The CPU's default placement of each cell: a device per core where the algorithm gains
    # from it, the first device for the SAC family.
    assert summary["devices"] == cpu_devices(algo, 2)
    assert not (suite / f"{algo}-pointmass" / "checkpoint").exists()  # checkpoints stay in runs/
    assert (base / "runs" / "smoke" / f"{algo}-pointmass" / "checkpoint").is_dir()
  with open(suite / "metrics.csv", newline="") as f:
    rows = list(csv.DictReader(f))
  # 3 algorithms x 2 seeds x 2 evaluations (5120 steps = two chunks of 5 x 512), and the
  # SAC loop's 1024 exploration steps + 8 chunks of 4 x 128 steps.
  sac_steps = [str(1024 + 512 * k) for k in range(1, 9)]
  assert sorted((r["algo"], r["seed"], r["env_steps"]) for r in rows) == sorted(
    [(a, s, t) for a in ("mg", "mle", "ppo") for s in ("0", "1") for t in ("2560", "5120")]
    + [(a, s, t) for a in ("mbpo", "mg-sac", "sac") for s in ("0", "1") for t in sac_steps]
  )
  # cos(ĝ_M, g_R) is logged for every algorithm with a model.
  assert all((r["model_grad_cosine"] != "") == (r["algo"] not in ("ppo", "sac")) for r in rows)
  # The SAC cells' branch-length schedule (the suite's setting) and the lengths it gave.
  for algo in ("mbpo", "mg-sac"):
    config = json.loads((suite / f"{algo}-pointmass" / "config.json").read_text())
    assert config["branch_schedule"] == [0, 2, 1, 3]
  assert all(1 <= float(r["branch_length"]) <= 3 for r in rows if r["algo"] in ("mbpo", "mg-sac"))


@pytest.mark.slow
def test_smoke_suite_resumes_without_rerunning(smoke):
  base, _ = smoke
  proc = _run(
    "experiments/benchmark.py",
    "--suite",
    "smoke",
    "--results",
    str(base / "res"),
    "--runs",
    str(base / "runs"),
  )
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert proc.stdout.count("done, skipped") == len(SMOKE_ALGOS)  # every cell
  assert "compiled" not in proc.stdout


@pytest.mark.slow
def test_smoke_cell_pauses_at_the_time_limit_and_continues(smoke, tmp_path):
  base, _ = smoke
  args = (
    "experiments/benchmark.py",
    "--suite",
    "smoke",
    "--algo",
    "ppo",
    "--results",
    str(tmp_path / "res"),
    "--runs",
    str(tmp_path / "runs"),
  )
  proc = _run(*args, "--time-limit", "0")
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "ppo-pointmass: paused at 2560 env steps" in proc.stdout
  cell = tmp_path / "res" / "smoke" / "ppo-pointmass"
  assert json.loads((cell / "summary.json").read_text())["status"] == "paused"
  proc = _run(*args)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "(resumed)" in proc.stdout and "final eval return" in proc.stdout
  assert json.loads((cell / "summary.json").read_text())["status"] == "finished"

  def rows(path):
    with open(path, newline="") as f:
      return [{k: v for k, v in r.items() if k != "wall_time_s"} for r in csv.DictReader(f)]

  assert rows(cell / "metrics.csv") == rows(
    base / "res" / "smoke" / "ppo-pointmass" / "metrics.csv"
  )


@pytest.mark.slow
def test_plot_renders_the_smoke_suite(smoke):
  base, _ = smoke
  suite = base / "res" / "smoke"
  proc = _run("experiments/plot.py", str(suite))
  assert proc.returncode == 0, proc.stderr[-2000:]
  for name in (
    "learning_curves.png",
    "alignment.png",
    "alignment_sac.png",
    "aggregate.png",
    "table.csv",
    "table.md",
  ):
    assert (suite / name).stat().st_size > 0, name
  with open(suite / "table.csv", newline="") as f:
    table = list(csv.DictReader(f))
  assert {r["algo"] for r in table} == set(SMOKE_ALGOS)
  for r in table:
    assert float(r["ci_low"]) <= float(r["iqm"]) <= float(r["ci_high"])


@pytest.mark.slow
def test_ablations_gathers_tagged_cells(smoke):
  base, _ = smoke
  res = base / "res"
  # A tagged copy of the mg cell stands in for a `--tag NAME --set FIELD=VALUE` run.
  (res / "smoke-lr").mkdir()
  shutil.copytree(res / "smoke" / "mg-pointmass", res / "smoke-lr" / "mg-pointmass")
  proc = _run(
    "experiments/ablations.py",
    "--results",
    str(res),
    "--suite",
    "smoke",
    "--env",
    "pointmass",
    "--algo",
    "mg",
  )
  assert proc.returncode == 0, proc.stderr[-2000:]
  out = res / "smoke-ablations-pointmass"
  for name in ("learning_curves.png", "alignment.png", "table.csv"):
    assert (out / name).stat().st_size > 0, name
  with open(out / "table.csv", newline="") as f:
    table = list(csv.DictReader(f))
  assert {r["algo"] for r in table} == {"mg:default", "mg:lr"}
  by_algo = {(r["algo"], r["milestone"]): r["iqm"] for r in table}
  assert by_algo[("mg:default", "5120")] == by_algo[("mg:lr", "5120")]  # the same data
  proc = run_main(
    ROOT / "experiments" / "ablations.py", "--results", res, "--suite", "smoke", "--env", "hopper"
  )
  assert proc.returncode == 2 and "no mg-hopper cells" in proc.stderr


@pytest.mark.slow
def test_every_algorithms_loaded_policy_acts_as_its_evaluation(smoke):
  # The smoke cells' checkpoints, one per algorithm: seed 1's policy from load_policy plays
  # the evaluation episodes of the trainer's own `evaluate` on the restored state exactly.
  import jax

  import mgjax
  from mgjax import envs
  from mgjax.algorithms import config_from_dict
  from mgjax.run import restore_checkpoint

  base, _ = smoke
  for algo in SMOKE_ALGOS:
    run_dir = base / "runs" / "smoke" / f"{algo}-pointmass"
    config = config_from_dict(json.loads((run_dir / "config.json").read_text()))
    trainer = mgjax.make_trainer(config)
    keys = jax.vmap(jax.random.key)(np.arange(2, dtype=np.uint32))
    state = restore_checkpoint(run_dir / "checkpoint", jax.eval_shape(jax.vmap(trainer.init), keys))
    seed1 = jax.tree.map(lambda x: x[1], state)
    key = jax.random.key(7)
    expected = jax.jit(lambda s, k: trainer.algorithm.evaluate(trainer.setup, s, k))(seed1, key)
    act = mgjax.load_policy(run_dir, seed=1)
    got = jax.jit(lambda k: envs.evaluate(trainer.setup.env, act, k, config.num_eval_envs))(key)
    assert float(got["return"]) == float(expected["eval_return"]), algo
    assert float(got["length"]) == float(expected["eval_length"]), algo


@pytest.mark.slow
def test_sac_alignment_measures_the_mg_sac_cell(smoke, tmp_path):
  # The mg-sac cell's run folder is what train.py writes; its alignment and noise ceiling
  # come from its checkpoint.
  base, _ = smoke
  run_dir = base / "runs" / "smoke" / "mg-sac-pointmass"
  check_outputs(
    run_dir,
    algo="mg-sac",
    env="pointmass",
    seeds=[0, 1],
    flags={
      "num_envs": 1,
      "rollout_length": 128,
      "exploration_steps": 1024,
      "ensemble_size": 3,
      "branch_schedule": (0, 2, 1, 3),
      "mg_horizon": 3,
    },
  )
  proc = _run(
    "experiments/sac_alignment.py",
    str(run_dir),
    "--draws",
    "2",
    "--out",
    str(tmp_path / "ceiling.json"),
  )
  assert proc.returncode == 0, proc.stderr[-2000:]
  result = json.loads((tmp_path / "ceiling.json").read_text())
  assert result["algo"] == "mg-sac" and set(result["seeds"]) == {"0", "1"}
  for values in [*result["seeds"].values(), result["mean"]]:
    assert set(values) == {"model_vs_real", "real_vs_real"}
    assert all(-1.0 <= v <= 1.0 for v in values.values()), values


@pytest.mark.slow
def test_evaluate_writes_every_seeds_episodes(smoke, tmp_path):
  base, _ = smoke
  run_dir = base / "runs" / "smoke" / "mbpo-pointmass"
  proc = _run(
    "experiments/evaluate.py", str(run_dir), "--episodes", "3", "--out", str(tmp_path / "det.json")
  )
  assert proc.returncode == 0, proc.stderr[-2000:]
  det = json.loads((tmp_path / "det.json").read_text())
  assert (det["algo"], det["env"], det["episodes"], det["deterministic"]) == (
    "mbpo",
    "pointmass",
    3,
    True,
  )
  assert set(det["seeds"]) == {"0", "1"}
  for r in det["seeds"].values():
    assert len(r["returns"]) == len(r["lengths"]) == 3
    assert r["return_mean"] == pytest.approx(np.mean(r["returns"]))
    assert all(1 <= n <= 100 for n in r["lengths"])  # pointmass's time limit
  assert det["return_mean"] == pytest.approx(
    np.mean([r["return_mean"] for r in det["seeds"].values()])
  )
  proc = _run(
    "experiments/evaluate.py",
    str(run_dir),
    "--episodes",
    "3",
    "--seed",
    "1",
    "--stochastic",
    "--out",
    str(tmp_path / "sto.json"),
  )
  assert proc.returncode == 0, proc.stderr[-2000:]
  sto = json.loads((tmp_path / "sto.json").read_text())
  assert set(sto["seeds"]) == {"1"} and not sto["deterministic"]
  assert sto["seeds"]["1"]["returns"] != det["seeds"]["1"]["returns"]  # sampled actions
  for args, field in (
    (["--episodes", "0"], "episodes=0"),
    (["--seed", "9"], "seed=9"),
    (["--video", "x.gif"], "video='x.gif'"),
    (["--html", "x.htm"], "html='x.htm'"),
    (["--html", str(tmp_path / "x.html")], "env='pointmass'"),
    (["--seed", "0", "--video-seed", "1", "--frame", str(tmp_path / "x.png")], "video-seed=1"),
  ):
    bad = run_main(ROOT / "experiments" / "evaluate.py", run_dir, *args)  # inprocess.py
    lines = [line for line in bad.stderr.splitlines() if line.strip()]
    assert bad.returncode == 2 and len(lines) == 1 and field in lines[0], bad.stderr
  assert not any(tmp_path.glob("x.*"))


def test_set_reads_config_fields_and_their_earlier_names():
  assert cli.parse_set(["branch_schedule=0,2,1,3", "tau=0.01", "num_envs=4"]) == {
    "branch_schedule": (0, 2, 1, 3),
    "tau": 0.01,
    "num_envs": 4,
  }
  assert cli.parse_set(["rollout_schedule=0,2,1,3"]) == {"branch_schedule": (0, 2, 1, 3)}
  with pytest.raises(ConfigError, match="unknown Config field 'nope'"):
    cli.parse_set(["nope=1"])
  # The smoke suite's SAC cells keep their settings under the field's current name.
  config = SUITES["smoke"].config("mbpo", "pointmass", {})
  assert config.branch_schedule == (0, 2, 1, 3) and config.rollout_length == 128


def test_every_suite_cell_is_a_valid_config_and_cpu_sac_cuts_the_cpu_costs():
  for name, suite in SUITES.items():
    for env in suite.envs:
      for algo in suite.algos:
        config = suite.config(algo, env, {})  # make_config validates; raises on a bad cell
        assert (config.algo, config.env) == (algo, env), name
  published = SUITES["cpu"].config("mbpo", "hopper", {})
  for algo in ("mbpo", "mg-sac"):
    config = SUITES["cpu-sac"].config(algo, "hopper", {})
    # The three CPU cuts, and nothing else moved from the published hopper settings.
    assert (
      config.updates_per_step,
      config.model_fit_budget,
      config.model_epoch_steps,
      config.elite_draw,
    ) == (5, 100, 50, "block")
    assert published.updates_per_step == 20 and published.model_fit_budget == 0
    same = (
      "branch_schedule",
      "rollout_batch",
      "ensemble_size",
      "elites",
      "model_hidden",
      "sac_hidden",
      "sac_batch",
      "real_ratio",
      "exploration_steps",
      "rollout_length",
    )
    assert all(getattr(config, f) == getattr(published, f) for f in same)
    assert config.total_steps == 40_000


def test_cpu_long_is_the_cpu_cell_to_1m_with_its_milestones_evaluated():
  for algo, env in itertools.product(SUITES["cpu-long"].algos, SUITES["cpu-long"].envs):
    long, short = (SUITES[s].config(algo, env, {}) for s in ("cpu-long", "cpu"))
    changed = {
      f.name for f in dataclasses.fields(long) if getattr(long, f.name) != getattr(short, f.name)
    }
    assert changed == {"total_steps", "eval_every"}
    schedule = run_schedule(long)
    evaluated = {
      (k + 1) * long.eval_every * schedule.batch_steps for k in range(schedule.num_chunks)
    }
    assert {102_400, 256_000, 512_000, 1_024_000} <= evaluated  # 100k, 250k, 500k and 1M
    assert schedule.env_steps == 1_024_000


def test_suite_cells_go_env_by_env_with_the_sac_family_last():
  cells = SUITES["cpu"].cells(("hopper", "ant"), ("sac", "mg", "mbpo", "ppo"))
  assert [(a, e) for a, e, _ in cells] == [
    ("mg", "hopper"),
    ("ppo", "hopper"),
    ("mg", "ant"),
    ("ppo", "ant"),
    ("sac", "hopper"),
    ("mbpo", "hopper"),
    ("sac", "ant"),
    ("mbpo", "ant"),
  ]
  assert all(c.total_steps == 100_000 and c.eval_every == 5 for _, _, c in cells)


def test_benchmark_rejects_unknown_suite():
  proc = _run("experiments/benchmark.py", "--suite", "nope")
  assert proc.returncode == 2
  assert proc.stderr.strip().count("\n") == 0 and "suite='nope'" in proc.stderr


@pytest.mark.slow
def test_gradient_noise_measures_the_ceiling(tmp_path):
  out = tmp_path / "noise.json"
  proc = _run(
    "experiments/gradient_noise.py",
    "--env",
    "pointmass",
    "--at",
    "0,1",
    "--batches",
    "6",
    "--set",
    "num_envs=16",
    "--set",
    "eval_every=2",
    "--set",
    "mle_steps=20",
    "--out",
    str(out),
  )
  assert proc.returncode == 0, proc.stderr[-2000:]
  points = json.loads(out.read_text())
  assert [p["env_steps"] for p in points] == [0, 2 * 16 * 32]
  for r in points:
    assert r["batches"] == 6 and r["batch_steps"] == 16 * 32
    for name in (
      "real_pairwise",
      "real_vs_rest",
      "model_buffer",
      "model_batch",
      "model_batch_pooled",
      "model_vs_real_all_pooled",
    ):
      assert -1.0 <= r[name] <= 1.0, (name, r[name])
    # The mean of five batches' g_R is less noisy than one batch's, so each g_R agrees more
    # with it than with another single batch (in expectation sqrt(rho * 5rho / (1 + 4rho))
    # against rho for a pairwise cosine 0 < rho < 1).
    assert r["real_vs_rest"] > r["real_pairwise"], r
    # Per parameter array: the sizes add up to θ's and the norm shares to 1.
    arrays = r["real_pairwise_by_array"].values()
    assert sum(a["size"] for a in arrays) == r["policy_params"]
    assert sum(a["norm_share"] for a in arrays) == pytest.approx(1.0, rel=1e-4)
    assert all(-1.0 <= a["pairwise"] <= 1.0 for a in arrays)
  # The figure and the bad input: main() in this process (tests/inprocess.py).
  noise = functools.partial(run_main, ROOT / "experiments" / "gradient_noise.py")
  proc = noise("--plot", tmp_path)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert (tmp_path / "gradient_noise.png").stat().st_size > 0
  bad = noise("--plot", tmp_path / "empty")
  assert bad.returncode == 2 and "no *.json files" in bad.stderr
  bad = noise("--batches", "1")
  assert bad.returncode == 2 and "batches=1" in bad.stderr
  bad = noise("--at", "3,1")
  assert bad.returncode == 2 and "--at='3,1'" in bad.stderr
  bad = noise("--set", "mg_start=nowhere")
  assert bad.returncode == 2 and "mg_start='nowhere'" in bad.stderr
  assert "Traceback" not in bad.stderr


@pytest.mark.slow
def test_roofline_counts_the_kernels_flops_and_splits_a_run_segment(tmp_path):
  # Small networks on pointmass: our FLOP count of each kernel agrees with XLA's (which adds
  # the element-wise work), and the stages of one timed iteration add up to the total.
  out = tmp_path / "speed.json"
  small = (
    "sac_hidden=32,32",
    "model_hidden=32,32",
    "rollout_batch=250",
    "buffer_size=20000",
    "exploration_steps=500",
    "updates_per_step=2",
    "model_max_epochs=2",
    "mg_rollouts=16",
    "mg_horizon=3",
  )
  # mg-sac's segment: every stage of mbpo's and its MG steps; and again as a variant with
  # one SAC update per env step.
  proc = _run(
    "experiments/bench_speed.py",
    "--env",
    "pointmass",
    "--sections",
    "roofline",
    "--repeats",
    "1",
    "--segment-iterations",
    "1",
    "--segment-algos",
    "mg-sac",
    "--out",
    str(out),
    "--variant-set",
    "updates_per_step=1",
    *(x for item in small for x in ("--sac-set", item)),
  )
  assert proc.returncode == 0, proc.stderr[-2000:]
  roofline = json.loads(out.read_text())["roofline"]
  assert roofline["peak"]["matmul_2048_cube_gflops"] > 0
  # Under elite_draw "block" XLA's count too is one elite's share of the rollout step's.
  for name in ("sac_update", "ensemble_step", "rollout_step", "rollout_step_block"):
    k = roofline["kernels"][name]
    assert k["flops"] <= k["xla_flops"] <= 1.3 * k["flops"], (name, k)
    assert k["of_peak"] == pytest.approx(k["gflops"] / roofline["peak"]["matmul_2048_cube_gflops"])
  assert "segment_mbpo" not in roofline
  segment = roofline["segment_mg-sac"]
  split = segment["s_per_1000_env_steps"]
  assert set(split) == {
    "model_fitting",
    "mg_steps",
    "alignment",
    "rollouts",
    "env_steps",
    "sac_updates",
  }
  assert all(t >= 0 for t in split.values()), split
  assert segment["total_s_per_1000_env_steps"] == pytest.approx(sum(split.values()))
  variant = roofline["segment_mg-sac_variant"]
  assert variant["variant"] == {"updates_per_step": 1}
  assert set(variant["s_per_1000_env_steps"]) == set(split)
  assert variant["speedup"] == pytest.approx(
    segment["total_s_per_1000_env_steps"] / variant["total_s_per_1000_env_steps"]
  )
