"""Tests for lab.probe, the alignment probe, and its command
experiments/alignment_probe.py.

One tiny `mle` state on the point mass (one chunk trained) serves every test; the probe's
programs are small (a few model steps, two fit keys).
"""

import dataclasses
import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tiny
from inprocess import run_main
from paths import ROOT

import mgjax
from mgjax.config import Config

sys.path.insert(0, str(ROOT / "experiments"))
from lab import probe  # noqa: E402

PROBE = ROOT / "experiments" / "alignment_probe.py"
TINY = Config(algo="mle", **tiny.PROBE)
PROBE_SETS = (
  'total_steps=512',
  'num_envs=8',
  'rollout_length=16',
  'eval_every=2',
  'model_hidden=32',
  'mle_steps=5',
  'mg_rollouts=8',
  'model_rollouts=16',
  'buffer_size=4096',
)  # the command tests' tiny config
SETTINGS = probe.ProbeSettings(fit_batches=4, heldout_batches=4, draws=3, fit_keys=2)


@pytest.fixture(scope="module")
def snapshot():
  trainer = mgjax.make_trainer(TINY)
  state, _ = jax.jit(trainer.chunk)(jax.jit(trainer.init)(jax.random.key(0)))
  return trainer, state


@pytest.fixture(scope="module")
def data(snapshot):
  trainer, state = snapshot
  collect = jax.jit(lambda s, k: probe.collect_batches(trainer.setup, s, k, 4))
  state, fit_data = collect(state, jax.random.key(1))
  state, heldout = collect(state, jax.random.key(2))
  return state, fit_data, heldout


@pytest.fixture(scope="module")
def measure(snapshot, data):
  """`probe.measure` of the data's state with key(3) and 3 draws, one program per disjoint
  (the held-out batches an argument): shared by the tests that measure."""
  su, state = snapshot[0].setup, data[0]
  return jax.jit(
    lambda p, ho, disjoint: probe.measure(su, state, p, ho, jax.random.key(3), 3, disjoint),
    static_argnums=2,
  )


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


def _pooled_draws(su, state, obs, key, draws, real_grad):
  """The pooled ĝ_M of `measure`, recomputed by hand from the same draws."""
  pkey, _ = jax.random.split(key)

  @jax.jit  # one program for the draws (op by op, their hundreds of ops compile one by one)
  def draw(k, obs, real_grad):
    a, b = jax.random.split(k)
    start = obs[jax.random.randint(a, (su.mg.mg_rollouts,), 0, obs.shape[0])]
    return probe.model_grad(su, state, state.model_params, start, b, real_grad)[1]["model_grad"]

  grads = [draw(k, obs, real_grad) for k in jax.random.split(pkey, draws)]
  return jax.tree.map(lambda *g: jnp.mean(jnp.stack(g), 0), *grads)


@pytest.mark.parametrize("disjoint", [True, False])
def test_measure_pooled_alignment_is_one_against_the_models_own_pooled_gradient(
  snapshot, data, measure, disjoint
):
  trainer, _ = snapshot
  state, _, heldout = data
  su, key = trainer.setup, jax.random.key(3)  # the measure fixture's key
  # ĝ_M starts from the second half of the held-out batches (all of them when overlapping).
  starts = heldout.rows["obs"][2:] if disjoint else heldout.rows["obs"]
  first = jax.tree.map(lambda x: x[0], heldout.real_grad)
  pooled = _pooled_draws(su, state, starts.reshape((-1, su.env.obs_size)), key, 3, first)
  # Every held-out batch's g_R set to it: the pooled alignment is then exactly 1, while the
  # single-batch one compares single draws with it and stays below.
  target = heldout._replace(
    real_grad=jax.tree.map(lambda g, h: jnp.broadcast_to(g, h.shape), pooled, heldout.real_grad)
  )
  m = measure(state.model_params, target, disjoint)  # probe.measure with key and 3 draws
  assert float(m["pooled"]) == pytest.approx(1.0, abs=1e-5)
  assert float(m["single"]) < 0.999
  assert np.isfinite(float(m["nll"]))


def test_heldout_split_gives_disjoint_halves():
  target, start = probe.heldout_split(7)
  assert list(target) == [0, 1, 2] and list(start) == [3, 4, 5]
  assert not set(target) & set(start)
  assert list(probe.heldout_split(4, disjoint=False)[0]) == list(probe.heldout_split(4, False)[1])
  with pytest.raises(ValueError, match="heldout_batches=1"):
    probe.heldout_split(1)


def test_start_states_and_target_come_from_disjoint_batches(data, measure):
  state, _, heldout = data
  run = lambda ho, disjoint: measure(state.model_params, ho, disjoint)
  # Other states in the target half, other g_R in the start half.
  shifted = heldout.rows["obs"].at[:2].add(0.5)
  other = heldout._replace(
    rows={**heldout.rows, "obs": shifted},
    real_grad=jax.tree.map(lambda g: g.at[2:].set(-g[2:] + 1.0), heldout.real_grad),
  )
  base, changed = run(heldout, True), run(other, True)
  for m in ("pooled", "single"):  # neither side sees the other half's data
    assert float(changed[m]) == pytest.approx(float(base[m]), abs=1e-6)
  # Overlapping, both sides see every batch: the same change moves the measurement.
  assert abs(float(run(other, False)["pooled"]) - float(run(heldout, False)["pooled"])) > 1e-3


def test_disjoint_floor_recovers_the_closed_form_ceiling():
  # g_R^i = g + σ ε_i, |g|² = 1, E|σ ε|² = σ² d = 4: a mean of m = 200 batches has
  # reliability R = 1 / (1 + 4/200), the two halves' means agree at cosine ≈ R, and a
  # noiseless ĝ_M = g scores cos(g, ḡ_R) ≈ √R against the target half's mean.
  d, n, sigma = 400, 400, 0.1
  rng = np.random.default_rng(0)
  g = np.zeros(d)
  g[0] = 1.0
  noisy = g + sigma * rng.standard_normal((n, d))
  fit = probe.RealBatches(rows={}, real_grad={"w": jnp.asarray(g, jnp.float32)[None]})
  floor = probe.disjoint_floor(fit, probe.RealBatches({}, {"w": jnp.asarray(noisy, jnp.float32)}))
  reliability = 1 / (1 + 4 / 200)
  assert floor["real_pairwise"] == pytest.approx(0.2, abs=0.01)
  assert floor["target_batches"] == 200
  assert floor["pooled_split_half"] == pytest.approx(reliability, abs=0.01)
  assert floor["pooled_ceiling"] == pytest.approx(np.sqrt(reliability), abs=0.01)
  target = noisy[:200].mean(0)
  assert floor["pooled_ceiling"] == pytest.approx(target[0] / np.linalg.norm(target), abs=0.01)


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
    (["--train-seeds", "0,1"], "train-seeds='0,1'"),
    (["--train-seeds", "0,x"], "train-seeds='0,x'"),
    (["--heldout-sets", "0"], "heldout-sets=0"),
    (["--heldout-sets", "2", "--only-sets", "2"], "only-sets=[2]"),
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
      str(tmp_path / "snaps-{seed}"),
      "--train-seeds",
      "0,1",
      "--heldout-sets",
      "2",
      "--cells",
      str(tmp_path / "cells"),
      "--objectives",
      "nll,mg-pathwise-target16",
      "--fit-keys",
      "2",
      "--fit-batches",
      "16",
      "--heldout-batches",
      "16",  # as many as the fit batches: one collection program for both
      "--draws",
      "2",
      *[a for x in PROBE_SETS for a in ("--set", x)],
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
  # One cell per (training seed, held-out set), each its own data: the floors differ.
  cells = point["cells"]
  assert [(c["seed"], c["set"]) for c in cells] == [(0, 0), (0, 1), (1, 0), (1, 1)]
  assert len({c["floor"]["pooled_split_half"] for c in cells}) == 4
  assert cells[0]["snapshot"].endswith("snaps-0/chunks=1")
  assert cells[2]["snapshot"].endswith("snaps-1/chunks=1")
  # Each MG objective is paired with NLL only: the difference per (seed, set, fit key), with
  # both CIs over all cells and its mean per cell.
  mg, nll = point["objectives"]["mg-pathwise-target16"], point["objectives"]["nll"]
  assert mg["vs"] == "nll" and "diff" not in nll
  assert mg["settings"]["estimator"] == "pathwise" and mg["settings"]["target_batches"] == 16
  for m in probe.METRICS:
    assert len(mg["per_key"][m]) == 8
    want = np.mean(np.subtract(mg["per_key"][m], nll["per_key"][m]))
    d = mg["diff"][m]
    assert d["mean"] == pytest.approx(want)
    assert d["lo"] <= d["mean"] <= d["hi"] and d["t_lo"] <= d["mean"] <= d["t_hi"]
    assert len(mg["diff_per_cell"][m]) == 4
    assert all(np.isfinite(mg["per_key"][m]))
  assert (tmp_path / "probe.png").stat().st_size > 0
  for seed in (0, 1):
    assert (tmp_path / f"snaps-{seed}" / "chunks=1" / "resume" / "meta.json").exists()
  table = run_main(PROBE, "--out", out, "--table")
  assert table.returncode == 0 and "s1/1:" in table.stdout, table.stderr
  # --cells: a command with fewer seeds and sets reuses the cells already measured.
  again = tmp_path / "again.json"
  args = ["--env", "pointmass", "--at", "1", "--snapshots", str(tmp_path / "snaps-{seed}")]
  args += ["--train-seeds", "1", "--objectives", "nll,mg-pathwise-target16", "--fit-keys", "2"]
  args += ["--fit-batches", "16", "--heldout-batches", "16", "--draws", "2"]
  args += ["--cells", str(tmp_path / "cells"), "--out", str(again)]
  r = run_main(PROBE, *args, *[a for x in PROBE_SETS for a in ("--set", x)])
  assert r.returncode == 0 and "(from " in r.stdout, r.stderr
  (point,) = json.loads(again.read_text())
  assert point["floor"] == cells[2]["floor"]
