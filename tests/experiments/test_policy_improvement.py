"""Tests for the policy-improvement probe (experiments/lab/policy_improvement.py, its report
and experiments/policy_improvement.py).

One tiny `mle` state on the point mass (one chunk trained) serves every test; the command
runs once on it (saved as a snapshot) with two fit keys, two PPO keys and four episodes.
"""

import json
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
from lab import policy_improvement as pi  # noqa: E402
from lab import policy_improvement_report as report  # noqa: E402
from lab import probe  # noqa: E402

SCRIPT = ROOT / "experiments" / "policy_improvement.py"
TINY = Config(algo="mle", **tiny.PROBE)
SIZES = ("--fit-batches", 4, "--heldout-batches", 4, "--episodes", 4, "--draws", 3)
ARMS = ("nll", "mg-full", "real16")  # the command's test: one arm of each kind


@pytest.fixture(scope="module")
def snapshot():
  trainer = mgjax.make_trainer(TINY)
  state, _ = jax.jit(trainer.chunk)(jax.jit(trainer.init)(jax.random.key(0)))
  return trainer, state


@pytest.fixture(scope="module")
def collect(snapshot):
  """`pi.collect` of 4 batches, one program for the tests that collect."""
  su = snapshot[0].setup
  return jax.jit(lambda s, k: pi.collect(su, s, k, 4))


@pytest.fixture(scope="module")
def data(snapshot, collect):
  _, state = snapshot
  state, fit = collect(state, jax.random.key(1))
  return state, fit, pi.fit_state(state, fit, TINY.mle_weight, TINY.mg_max_grad_norm)


def _keys(*seeds):
  return jnp.stack([jax.random.key(s) for s in seeds])


@pytest.fixture(scope="module")
def result(snapshot, tmp_path_factory):
  trainer, state = snapshot
  folder = tmp_path_factory.mktemp("snap") / "chunks=1"
  probe.save_snapshot(folder, TINY, state, {"chunks": 1, "eval_return": 0.0, "seed": 0})
  out = folder.parent / "pi.json"
  r = run_main(SCRIPT, "--snapshots", folder, "--out", out, "--arms", ",".join(ARMS), *SIZES)
  assert r.returncode == 0, r.stderr[-3000:]
  return json.loads(out.read_text()), r.stdout, out


def test_collect_gives_the_alignment_probes_rows_and_policy_gradients(snapshot, collect):
  trainer, state = snapshot
  su, key = trainer.setup, jax.random.key(5)
  _, ours = collect(state, key)  # 4 batches
  _, theirs = jax.jit(lambda s, k: probe.collect_batches(su, s, k, 4))(state, key)
  jax.tree.map(np.testing.assert_array_equal, ours.rows, theirs.rows)
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
    ours.grad_raw,
    theirs.real_grad,
  )
  # The normalised convention is another gradient, not a rescaled one.
  cos = probe.cos(
    probe.flat(probe.mean_tree(ours.grad_raw)), probe.flat(probe.mean_tree(ours.grad_norm))
  )
  assert float(cos) < 0.999


def test_common_random_numbers_give_theta_a_zero_improvement(snapshot, data):
  trainer, _ = snapshot
  state, fit, fs = data
  su = trainer.setup
  theta = state.agent_params["policy"]
  # θ⁺ as the command's real arm computes it, vmapped over PPO keys (one program for both).
  real = jax.vmap(lambda f, b, k: pi.improve_real(su, f, b, k), in_axes=(None, None, 0))
  plus = jax.tree.map(lambda x: x[0], jax.jit(real)(fs, fit, _keys(2, 3)))
  stack = jax.tree.map(lambda a, b: jnp.stack([a, b, a]), theta, plus)
  returns = np.asarray(pi.episode_returns(su, state.obs_stats, stack, jax.random.key(3), 4))
  np.testing.assert_array_equal(returns[0], returns[2])  # θ twice: the same episodes
  assert not np.array_equal(returns[0], returns[1])  # θ⁺ is another policy
  # The episodes are mgjax.envs.evaluate's, stopped when the last one ends.
  act = mgjax.algorithms.mg.make_policy(su, mgjax.algorithms.mg.policy_params(state))
  full = mgjax.envs.evaluate(su.env, act, jax.random.key(3), 4)["returns"]
  np.testing.assert_allclose(returns[0], full, rtol=1e-5)
  s = pi.surrogate(su, state.obs_stats, stack, fit)
  adv = jax.vmap(lambda a: mgjax.losses.transform_advantages(a, "normalised"))(fit.advantage)
  assert float(s["surrogate"][0]) == float(jnp.mean(adv)) == float(s["surrogate"][2])
  assert abs(float(s["surrogate"][0])) < 1e-6 and float(s["kl"][0]) == 0.0
  # PPO on the real batches raises the surrogate on those batches, at a positive KL.
  assert float(s["surrogate"][1]) > 0 and float(s["kl"][1]) > 0


def test_each_arm_fits_another_model_than_nll_only(snapshot, data):
  trainer, _ = snapshot
  state, fit, fs = data
  su, keys = trainer.setup, _keys(4, 5)
  assert TINY.mg_max_grad_norm == 10.0
  fitted = {}
  for arm in pi.MODEL_ARMS:  # as the command fits them (policies): its arms' programs
    fit_one = lambda sn, f, b, k, arm=arm: pi.fit_arm(su, sn, f, b, arm, k, TINY.mg_max_grad_norm)
    fitted[arm] = jax.jit(jax.vmap(fit_one, in_axes=(None, None, None, 0)))(state, fs, fit, keys)
  start = probe.flat(state.model_params)
  for i in range(2):  # each fit key
    key_i = lambda tree, i=i: jax.tree.map(lambda x: x[i], tree)
    base = probe.flat(key_i(fitted["nll"][0]))
    assert float(jnp.linalg.norm(base - start)) > 0
    for arm in pi.MODEL_ARMS[1:]:
      assert float(jnp.linalg.norm(probe.flat(key_i(fitted[arm][0])) - base)) > 1e-4, arm
    # The loop's MG step clips the MG gradient to 10; at full strength it is not clipped, and
    # its own Adam step moves the model further from NLL only's step.
    mg_m, full_m = key_i(fitted["mg"][1]), key_i(fitted["mg-full"][1])
    assert float(mg_m["mg_grad_norm_clipped"]) <= 10.0 + 1e-4
    assert float(full_m["mg_grad_norm_clipped"]) == float(full_m["mg_grad_norm"])
    assert float(full_m["mg_update_cos"]) < float(mg_m["mg_update_cos"])


def test_the_command_measures_theta_at_zero_and_pairs_every_arm(result):
  doc, stdout, out = result
  (point,) = doc["points"]
  assert point["theta_check"]["dJ_A"] == 0.0 and point["theta_check"]["dJ_B"] == 0.0
  assert point["theta_check"]["kl_A"] == 0.0
  assert list(point["arms"]) == list(ARMS)
  for arm, row in point["arms"].items():
    shape = (2,) if arm == pi.REAL_ARM else (2, 2)
    for m in ("dJ_A", "dJ_B", "surrogate_A", "surrogate_B", "kl_A"):
      v = np.asarray(row["per_key"][m])
      assert v.shape == shape and np.all(np.isfinite(v)), (arm, m)
  (snap,) = doc["summary"]
  rows = doc["summary"][snap]
  assert "dJ_A" not in rows["nll"]["diff"] and "dJ_A" in rows["mg-full"]["diff"]
  arms = point["arms"]
  d = np.subtract(arms["mg-full"]["per_key"]["dJ_A"], arms["nll"]["per_key"]["dJ_A"])
  assert rows["mg-full"]["diff"]["dJ_A"]["mean"] == pytest.approx(d.mean())
  # The real arm pairs each PPO key with nll's mean over fit keys.
  d = np.subtract(
    arms["real16"]["per_key"]["surrogate_B"], np.mean(arms["nll"]["per_key"]["surrogate_B"], 0)
  )
  assert rows["real16"]["diff"]["surrogate_B"]["mean"] == pytest.approx(d.mean())
  assert doc["verdict"]["outcome"] in ("positive", "negative", "neither")
  assert f"| {report.snapshot_name(point)} | `mg-full` |" in stdout
  assert out.with_suffix(".png").stat().st_size > 0


def _point(env, steps, dj_gain, align_gain, seed=0):
  """A synthetic point: nll at ΔJ = 1 (A and B) and surrogate 0.01; every MG arm higher by
  dj_gain (ΔJ) and dj_gain / 100 (surrogate) and by align_gain in alignment."""
  rng = np.random.default_rng(seed)
  noise = lambda: 0.01 * rng.standard_normal((3, 2))

  def arm(gain, align):
    keys = {f"dJ_{s}": (1 + gain + noise()).tolist() for s in pi.SETS}
    keys |= {f"surrogate_{s}": (0.01 + gain / 100 + noise() / 100).tolist() for s in pi.SETS}
    keys |= {f"kl_{s}": np.full((3, 2), 0.01).tolist() for s in pi.SETS}
    a = {"align_raw": [0.5 + align] * 3, "align_norm": [0.5] * 3, "nll": [0.0] * 3}
    return {"keys": [3, 2], "per_key": keys, "alignment": a}

  arms = {"nll": arm(0.0, 0.0)} | {a: arm(dj_gain, align_gain) for a in report.MG_ARMS}
  return {"env": env, "env_steps": steps, "arms": arms}


def test_verdict_follows_the_issues_criteria():
  snaps = [("hopper", 61_000), ("hopper", 92_000), ("halfcheetah", 30_000)]
  better = [_point(e, s, 0.5, 0.1, seed=i) for i, (e, s) in enumerate(snaps)]
  v = report.verdict(report.summarise(better))
  assert v["outcome"] == "positive" and set(v["positive_arms"]) == set(report.MG_ARMS)
  # Better on one snapshot only: not enough.
  one = better[:1] + [_point(e, s, 0.0, 0.1, seed=9) for e, s in snaps[1:]]
  assert report.verdict(report.summarise(one))["outcome"] == "neither"
  # Alignment up, ΔJ level everywhere: negative.
  flat = report.summarise([_point(e, s, 0.0, 0.1, seed=i) for i, (e, s) in enumerate(snaps)])
  v = report.verdict(flat)
  assert v["outcome"] == "negative"
  assert v["arms"]["mg"]["aligned_not_better"] == ["hopper 61k", "hopper 92k", "halfcheetah 30k"]
  table = report.table(flat)
  assert table.count("| hopper 61k |") == 1 + len(report.MG_ARMS)
