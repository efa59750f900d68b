"""Tests for mgjax.analysis.probe, the alignment probe, and its command
experiments/alignment_probe.py.

One tiny `mle` state on the point mass (one chunk trained) serves every test; the probe's
programs are small (a few model steps, two fit keys).
"""

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from inprocess import run_main

import mgjax
from mgjax.analysis import probe
from mgjax.config import Config

ROOT = Path(__file__).resolve().parents[1]
PROBE = ROOT / "experiments" / "alignment_probe.py"
TINY = Config(
  algo="mle",
  env="pointmass",
  total_steps=2 * 8 * 16,
  num_envs=8,
  rollout_length=16,
  eval_every=2,
  num_eval_envs=2,
  policy_hidden=(16,),
  value_hidden=(16,),
  model_hidden=(32,),
  ppo_epochs=1,
  num_minibatches=2,
  buffer_size=512,
  mle_steps=20,
  mle_batch=32,
  mg_rollouts=16,
  mg_horizon=4,
  model_rollouts=16,
  model_horizon=4,
  model_updates=1,
)
SETTINGS = probe.ProbeSettings(fit_batches=4, heldout_batches=4, draws=3, fit_keys=2)


@pytest.fixture(scope="module")
def snapshot():
  trainer = mgjax.make_trainer(TINY)
  state, _ = jax.jit(trainer.chunk)(jax.jit(trainer.init)(jax.random.key(0)))
  return trainer, state


@pytest.fixture(scope="module")
def data(snapshot):
  trainer, state = snapshot
  su = trainer.setup
  state, fit_data = jax.jit(lambda s, k: probe.collect_batches(su, s, k, 4))(
    state, jax.random.key(1)
  )
  state, heldout = jax.jit(lambda s, k: probe.collect_batches(su, s, k, 4))(
    state, jax.random.key(2)
  )
  return state, fit_data, heldout


def test_noise_floor_recovers_the_closed_form_ceiling():
  # g_R^i = g + σ ε_i with |g|² = 1 and E|σ ε|² = σ² d: the mean pairwise cosine is
  # ρ = 1 / (1 + σ² d) = 1 / (1 + 0.01 · 400) = 0.2, and each half's mean of 200 batches has
  # noise σ² d / 200, so the split-half cosine is 1 / (1 + 4/200) ≈ 0.980.
  d, n, sigma = 400, 400, 0.1
  rng = np.random.default_rng(0)
  g = np.zeros(d)
  g[0] = 1.0
  grads = {"w": jnp.asarray(g + sigma * rng.standard_normal((n, d)), jnp.float32)}
  fit = probe.RealBatches(rows={}, real_grad={"w": jnp.asarray(g, jnp.float32)[None]})
  floor = probe.noise_floor(fit, probe.RealBatches(rows={}, real_grad=grads))
  assert floor["real_pairwise"] == pytest.approx(0.2, abs=0.01)
  assert floor["pooled_split_half"] == pytest.approx(1 / 1.02, abs=0.01)
  assert floor["fit_target_vs_pooled"] == pytest.approx(1 / np.sqrt(1 + 1 / n * 4), abs=0.01)


def test_collect_batches_gives_one_policy_gradient_per_batch(snapshot, data):
  trainer, state0 = snapshot
  _, fit_data, heldout = data
  theta = state0.agent_params["policy"]
  for batches in (fit_data, heldout):
    assert batches.rows["obs"].shape == (4, TINY.batch_steps, trainer.setup.env.obs_size)
    jax.tree.map(
      lambda g, p: np.testing.assert_equal(g.shape, (4,) + p.shape), batches.real_grad, theta
    )
  # Held-out batches are new data: their first batch is not the fit data's.
  assert not np.array_equal(fit_data.rows["obs"][0], heldout.rows["obs"][0])


def test_measure_pooled_alignment_is_one_against_the_models_own_pooled_gradient(snapshot, data):
  trainer, _ = snapshot
  state, _, heldout = data
  su, key = trainer.setup, jax.random.key(3)
  pkey, _ = jax.random.split(key)
  all_obs = heldout.rows["obs"].reshape((-1, su.env.obs_size))

  # The pooled ĝ_M of `measure`, recomputed by hand from the same draws.
  def draw(k):
    a, b = jax.random.split(k)
    start = all_obs[jax.random.randint(a, (su.mg.rollouts,), 0, all_obs.shape[0])]
    return probe.model_grad(
      su, state, state.model_params, start, b, jax.tree.map(lambda x: x[0], heldout.real_grad)
    )[1]["model_grad"]

  grads = [draw(k) for k in jax.random.split(pkey, 3)]
  pooled = jax.tree.map(lambda *g: jnp.mean(jnp.stack(g), 0), *grads)
  # Every held-out batch's g_R set to it: the pooled alignment is then exactly 1, while the
  # single-batch one compares single draws with it and stays below.
  target = heldout._replace(
    real_grad=jax.tree.map(lambda g, h: jnp.broadcast_to(g, h.shape), pooled, heldout.real_grad)
  )
  m = jax.jit(lambda p: probe.measure(su, state, p, target, key, 3))(state.model_params)
  assert float(m["pooled"]) == pytest.approx(1.0, abs=1e-5)
  assert float(m["single"]) < 0.999
  assert np.isfinite(float(m["nll"]))


def test_nll_tolerance_keeps_the_fitted_data_nll_within_it(snapshot, data):
  trainer, _ = snapshot
  state, fit_data, _ = data
  su = trainer.setup
  # From a model fitted to the data (300 NLL steps), where pure MG steps cost likelihood.
  fitted_nll = jax.jit(
    lambda k: probe.fit(su, state, fit_data, probe.Objective("nll", steps=300), k, 10.0)
  )(jax.random.key(6))
  state = state.replace(model_params=fitted_nll)
  nll = su.nll(state.obs_stats)
  held_in = jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:])[:4096], fit_data.rows)
  start = float(nll(state.model_params, held_in))
  loose = probe.Objective("mg-only", mg=True, mle_weight=0.0, steps=30)
  tight = loose._replace(nll_tolerance=1e-3)
  fitted = {
    o.nll_tolerance: jax.jit(lambda k, o=o: probe.fit(su, state, fit_data, o, k, 10.0))(
      jax.random.key(4)
    )
    for o in (loose, tight)
  }
  # Pure MG steps move the model off its likelihood fit; the tolerance holds them back
  # (and so changes the fit: without it both arms would be equal).
  assert float(nll(fitted[0.0], held_in)) > start + 1e-3
  assert float(nll(fitted[1e-3], held_in)) <= start + 1e-3 + 1e-6


def test_run_probe_refuses_a_target_of_more_batches_than_it_fits(snapshot):
  trainer, state = snapshot
  with pytest.raises(ValueError, match="target_batches=8"):
    probe.run_probe(
      trainer.setup,
      state,
      [probe.Objective("nll", target_batches=8)],
      jax.random.key(5),
      SETTINGS,
      10.0,
    )


def _assert_same_state(a, b):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
      x, y = jax.random.key_data(x), jax.random.key_data(y)
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_a_missing_snapshot_continues_from_the_latest_one_below_it(snapshot, tmp_path):
  _, after_one = snapshot
  straight, resumed, logged = tmp_path / "straight", tmp_path / "resumed", []
  probe.make_snapshots(TINY, straight, [1, 2], seed=0, log=logged.append)
  assert not any("continuing" in line for line in logged)
  probe.make_snapshots(TINY, resumed, [1], seed=0, log=logged.append)
  _assert_same_state(probe.load_snapshot(resumed / "chunks=1")[2], after_one)
  logged.clear()
  points = probe.make_snapshots(TINY, resumed, [1, 3], seed=0, log=logged.append)
  assert points == [(1, resumed / "chunks=1"), (3, resumed / "chunks=3")]
  assert logged[0].startswith("continuing from the snapshot after 1 chunks")
  assert len(logged) == 2 and logged[1].startswith("snapshot after 3 chunks")
  assert not (resumed / "chunks=2").exists()  # only the asked-for points are written
  probe.make_snapshots(TINY, straight, [3], seed=0, log=logged.append)
  assert logged[2].startswith("continuing from the snapshot after 2 chunks")
  _assert_same_state(
    probe.load_snapshot(straight / "chunks=3")[2], probe.load_snapshot(resumed / "chunks=3")[2]
  )
  # Another seed's or config's snapshot is not continued from.
  logged.clear()
  probe.make_snapshots(TINY, resumed, [2], seed=1, log=logged.append)
  other = dataclasses.replace(TINY, mle_steps=19)
  probe.save_snapshot(straight / "chunks=4", other, after_one, {"chunks": 4, "seed": 0})
  probe.make_snapshots(TINY, straight, [5], seed=0, log=logged.append)
  assert [line.split(" (")[0] for line in logged] == [
    "snapshot after 2 chunks",
    "continuing from the snapshot after 3 chunks",
    "snapshot after 5 chunks",
  ]


def test_snapshot_round_trip(snapshot, tmp_path):
  trainer, state = snapshot
  probe.save_snapshot(tmp_path, TINY, state, {"chunks": 1})
  config, _, loaded = probe.load_snapshot(tmp_path)
  assert config == dataclasses.replace(TINY)
  assert probe.load_snapshot_meta(tmp_path)["chunks"] == 1
  _assert_same_state(state, loaded)
  with pytest.raises(ValueError, match="run_index=1"):
    probe.load_snapshot(tmp_path, run_index=1)
  with pytest.raises(ValueError, match="no resume point"):
    probe.load_snapshot(tmp_path / "nothing")


@pytest.mark.parametrize(
  "flags, field",
  [
    (["--objectives", "nll,nope"], "objectives='nope'"),
    (["--objectives", "mg"], "objectives='mg'"),
    (["--at", "x"], "at='x'"),
    (["--fit-keys", "1"], "fit-keys=1"),
    (["--objectives", "nll,mg-target16", "--fit-batches", "4"], "fit-batches=4"),
    (["--from", "/nonexistent"], "snapshot='/nonexistent'"),
    (["--algo", "mbpo", "--objectives", "nll,mg-pathwise"], "objectives='mg-pathwise'"),
  ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, flags, field):
  args = ("--env", "pointmass", "--out", tmp_path / "p.json", *flags)
  if field == "at='x'":  # one case as a real process, the others in this one (inprocess.py)
    r = subprocess.run(
      [sys.executable, str(PROBE), *map(str, args)], capture_output=True, text=True, timeout=120
    )
  else:
    r = run_main(PROBE, *args)
  assert r.returncode == 2, r.stderr
  lines = [line for line in r.stderr.splitlines() if line.startswith("error")]
  assert len(lines) == 1 and field in lines[0], r.stderr
  assert "Traceback" not in r.stderr
  assert not (tmp_path / "p.json").exists()


def test_probe_command_writes_json_and_figure(tmp_path):
  out = tmp_path / "probe.json"
  r = subprocess.run(
    [
      sys.executable,
      str(PROBE),
      "--env",
      "pointmass",
      "--at",
      "1",
      "--snapshots",
      str(tmp_path / "snaps"),
      "--objectives",
      "nll,mg-pathwise-target16",
      "--fit-keys",
      "2",
      "--fit-batches",
      "16",
      "--heldout-batches",
      "2",
      "--draws",
      "2",
      "--set",
      "total_steps=512",
      "--set",
      "num_envs=8",
      "--set",
      "rollout_length=16",
      "--set",
      "eval_every=2",
      "--set",
      "model_hidden=32",
      "--set",
      "mle_steps=5",
      "--set",
      "mg_rollouts=8",
      "--set",
      "model_rollouts=16",
      "--set",
      "buffer_size=4096",
      "--out",
      str(out),
    ],
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert r.returncode == 0, r.stderr
  points = json.loads(out.read_text())
  assert [p["chunks"] for p in points] == [1]
  assert points[0]["env_steps"] == 2 * 8 * 16
  point = points[0]
  assert set(point["objectives"]) == {"nll", "mg-pathwise-target16"}
  assert set(point["start"]) == set(probe.METRICS)
  # Each MG objective is paired with NLL only: the difference per fit key, with its CI.
  mg, nll = point["objectives"]["mg-pathwise-target16"], point["objectives"]["nll"]
  assert mg["vs"] == "nll" and "diff" not in nll
  assert mg["settings"]["estimator"] == "pathwise" and mg["settings"]["target_batches"] == 16
  for m in probe.METRICS:
    assert len(mg["per_key"][m]) == 2
    want = np.mean(np.subtract(mg["per_key"][m], nll["per_key"][m]))
    assert mg["diff"][m]["mean"] == pytest.approx(want)
    assert mg["diff"][m]["lo"] <= mg["diff"][m]["mean"] <= mg["diff"][m]["hi"]
    assert all(np.isfinite(mg["per_key"][m]))
  assert (tmp_path / "probe.png").stat().st_size > 0
  assert (tmp_path / "snaps" / "chunks=1" / "resume" / "meta.json").exists()
