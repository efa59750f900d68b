"""The SAC-family alignment probe (`lab.sac_probe`) on a small `mg-sac` snapshot
on pointmass: the split, the pooled alignment recomputed by hand, one MG step of the
denoised target against its formula, and a whole probe's result."""

import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from chunked import MBPO_SMALL, MG_SAC_STAGE, sac_target
from paths import ROOT

from mgjax import envs
from mgjax.algorithms import get_algorithm, make_config, mbpo
from mgjax.optim import set_learning_rate

sys.path.insert(0, str(ROOT / "experiments"))
from lab import probe, sac_probe  # noqa: E402


@pytest.fixture(scope="module")
def snapshot():
  """A fitted ensemble after the random exploration (500 real transitions)."""
  config = make_config(**{**MBPO_SMALL, **MG_SAC_STAGE, "algo": "mg-sac", "total_steps": 5000})
  su = get_algorithm(config.algo).setup(config, envs.make_env(config.env))
  state = jax.jit(lambda k: mbpo.fit_model(su, mbpo.init(su, k), jax.random.key(2))[0])(
    jax.random.key(1)
  )
  return config, su, state


def test_split_cuts_the_valid_rows_in_two_disjoint_halves(snapshot):
  _, _, state = snapshot
  fit, held = sac_probe.split_buffer(state.buffer, jax.random.key(0))
  size = int(state.buffer.size)
  assert int(fit.size) == size // 2 and held["obs"].shape[0] == size - size // 2
  rows = lambda x: sorted(map(tuple, np.asarray(x).round(6)))
  together = np.concatenate([fit.data["obs"], held["obs"]])
  assert rows(together) == rows(np.asarray(state.buffer.data["obs"])[:size])
  with pytest.raises(ValueError, match="buffer size=0"):
    sac_probe.split_buffer(state.buffer.replace(size=jnp.zeros((), jnp.int32)), jax.random.key(0))


def test_pooled_alignment_is_one_against_the_models_own_pooled_gradient(snapshot):
  _, su, state = snapshot
  _, held = sac_probe.split_buffer(state.buffer, jax.random.key(0))
  chunk_obs, grads = jax.jit(lambda o, k: sac_probe.chunk_gradients(su, state, o, k))(
    held["obs"], jax.random.key(4)
  )
  heldout = sac_probe.HeldOut(held, chunk_obs, grads)
  key = jax.random.key(3)
  pkey, _ = jax.random.split(key)

  # The pooled ĝ_M of `measure`, recomputed by hand from the same draws (one program: op by
  # op, their hundreds of ops would compile one by one).
  @jax.jit
  def draw(k):
    a, b = jax.random.split(k)
    start = held["obs"][jax.random.randint(a, (su.mg.mg_rollouts,), 0, held["obs"].shape[0])]
    target = jax.tree.map(lambda x: x[0], grads)
    return sac_probe.mg_sac_model.mg_loss_from(su, state, state.model_params, start, b, target)[1][
      "model_grad"
    ]

  pooled = jax.tree.map(
    lambda *g: jnp.mean(jnp.stack(g), 0), *[draw(k) for k in jax.random.split(pkey, 3)]
  )
  # Every chunk's g_R set to it: the pooled alignment is then exactly 1, while the single
  # one compares single draws with it and stays below.
  same = heldout._replace(
    chunk_grads=jax.tree.map(lambda g, h: jnp.broadcast_to(g, h.shape), pooled, grads)
  )
  m = jax.jit(lambda p: sac_probe.measure(su, state, p, same, key, 3))(state.model_params)
  assert float(m["pooled"]) == pytest.approx(1.0, abs=1e-5)
  assert float(m["single"]) < 0.999
  assert float(m["nll"]) == pytest.approx(
    float(sac_probe.heldout_nll(su, state, state.model_params, held)), rel=1e-6
  )


def test_an_mg_step_of_the_denoised_target_follows_its_gradient(snapshot):
  """One step of `fit` (mle_weight = 0, fresh Adam) moves every parameter by
  −lr · sign(∂L/∂φ), L the loop's MG loss on the fit half with the target g_R on
  target_states fit states drawn with split(split(key)[1]): its formula, rebuilt here."""
  _, su, state = snapshot
  fit_buffer, _ = sac_probe.split_buffer(state.buffer, jax.random.key(0))
  lr = 1e-3
  state = state.replace(
    model_opt=set_learning_rate(su.model_optimizer.init(state.model_params), lr)
  )
  o = sac_probe.SACObjective("t", mg=True, mle_weight=0.0, steps=1, target_states=200)
  key = jax.random.key(9)
  fitted = jax.jit(lambda: sac_probe.fit(su, state, fit_buffer, o, key, 1e9))()
  key, tkey = jax.random.split(key)
  skey, gkey = jax.random.split(tkey)
  target = jax.jit(lambda b, s, g: sac_target(su, state, b, s, g, 200))(fit_buffer, skey, gkey)
  mkey = jax.random.split(jax.random.split(key, 1)[0])[0]
  s = state.replace(buffer=fit_buffer)
  grad = jax.jit(jax.grad(lambda p: mbpo.mg_loss(su, s, p, mkey, target)[0]))(state.model_params)
  checked = 0
  leaves = zip(jax.tree.leaves(fitted), jax.tree.leaves(state.model_params), jax.tree.leaves(grad))
  for after, before, g in leaves:
    moved, g = np.asarray(after) - np.asarray(before), np.asarray(g)
    big = np.abs(g) > 1e-4
    np.testing.assert_allclose(moved[big], -lr * np.sign(g[big]), rtol=2e-3, atol=1e-7)
    checked += int(big.sum())
  assert checked > 100


def test_run_probe_gives_the_ppo_probes_result_and_table(snapshot, tmp_path):
  config, su, state = snapshot
  objectives = [
    sac_probe.SACObjective("nll", steps=3),
    sac_probe.SACObjective("mg", mg=True, steps=3),
    sac_probe.SACObjective("mg-target4", mg=True, steps=3, target_states=-4),
  ]
  settings = sac_probe.SACProbeSettings(draws=2, fit_keys=2, fit_chunks=3)
  out = sac_probe.run_probe(
    su, state, objectives, jax.random.key(5), settings, config.mg_max_grad_norm, log=lambda _: 0
  )
  size = int(state.buffer.size)
  assert out["split"] == {"fit": size // 2, "heldout": size - size // 2}
  assert set(out["objectives"]) == {"nll", "mg", "mg-target4"}
  assert out["objectives"]["mg-target4"]["settings"]["target_states"] == 4 * 32 * 3
  assert "diff" not in out["objectives"]["nll"] and out["objectives"]["mg"]["vs"] == "nll"
  assert probe.check_finite(out) == [] and all(np.isfinite(v) for v in out["start"].values())
  assert all(len(r["per_key"]["pooled"]) == 2 for r in out["objectives"].values())
  point = {"env": "pointmass", "algo": "mg-sac", "env_steps": int(state.env_steps), **out}
  assert "`mg-target4`" in probe.probe_table([point])
  probe.plot_probe([point], tmp_path / "probe.png")
  assert (tmp_path / "probe.png").stat().st_size > 0
