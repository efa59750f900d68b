"""Tests for mgjax.algorithms.sac: model-free SAC in MBPO's loop (`--algo sac`)."""

import jax
import numpy as np
import pytest
from chunked import run_chunks
from tiny import SAC

from mgjax import envs
from mgjax.algorithms import get_algorithm, make_config, mbpo, run_schedule, sac

_SEEDS = 2


def test_sac_takes_mbpos_sac_settings_with_one_update_per_step():
  c, m = make_config(algo="sac", env="hopper"), make_config(algo="mbpo", env="hopper")
  for name in (
    "num_envs",
    "rollout_length",
    "eval_every",
    "buffer_size",
    "target_entropy",
    "sac_hidden",
    "sac_batch",
    "sac_learning_rate",
    "tau",
    "exploration_steps",
  ):
    assert getattr(c, name) == getattr(m, name), name
  assert c.updates_per_step == 1 and m.updates_per_step == 20
  assert make_config(algo="sac", env="hopper", updates_per_step=4).updates_per_step == 4
  assert run_schedule(c).initial_steps == 5000 and run_schedule(c).env_steps == 100_000


def test_sac_draws_only_real_rows():
  su = sac.setup(make_config(**SAC), envs.make_env("pointmass"))
  state = jax.jit(lambda k: sac.init(su, k))(jax.random.key(0))
  assert int(state.buffer.size) == 500 and int(state.env_steps) == 500
  batch = sac.real_batch(su, state, jax.random.key(1))
  assert batch.obs.shape == (128, 4) and np.all(np.asarray(batch.truncation) == 0)
  stored = {tuple(np.round(r, 6)) for r in np.asarray(state.buffer.data["obs"][:500])}
  assert all(tuple(np.round(r, 6)) in stored for r in np.asarray(batch.obs))


@pytest.mark.slow
def test_mbpo_takes_sacs_steps_and_evaluates_alike():
  """mbpo's SAC loop behaves as sac's: with the same SAC settings, from the same parameters,
  optimiser state, envs and real buffer, one iteration of acting and updating on the same
  minibatches gives the same parameters and metrics, and the same actor is evaluated alike."""
  env = envs.make_env("pointmass")
  su = sac.setup(make_config(**SAC), env)
  msu = get_algorithm("mbpo").setup(
    make_config(**{**SAC, "algo": "mbpo", "updates_per_step": 1, "model_hidden": (32, 32)}),
    env,
  )
  state = jax.jit(lambda k: sac.init(su, k))(jax.random.key(0))
  batch_fn = lambda s, k: sac.real_batch(su, s, k)  # the same minibatches for both

  def step(setup, module):
    out, metrics, obs = module.collect_and_update(setup, state, jax.random.key(1), batch_fn)
    return out.sac, metrics, obs, module.evaluate(setup, out, jax.random.key(2))

  ours, theirs = jax.jit(lambda: step(su, sac))(), jax.jit(lambda: step(msu, mbpo))()
  for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs)):
    np.testing.assert_array_equal(a, b)
  moved = [not np.array_equal(a, b) for a, b in zip(*map(jax.tree.leaves, (ours[0], state.sac)))]
  assert all(moved)  # the step changed every parameter: the comparison is not of a no-op


@pytest.fixture(scope="module")
def e2e():
  return run_chunks(make_config(**SAC), _SEEDS)


@pytest.mark.slow
def test_sac_learns_pointmass(e2e):
  trainer, state, metrics = e2e
  assert trainer.num_chunks == 9 and np.asarray(state.env_steps).tolist() == [5000] * _SEEDS
  returns = metrics["eval"]["eval_return"]  # [seeds, chunks]
  assert np.all(np.isfinite(returns))
  # The untrained actor drifts out of the arena (return ≈ 15–35); a stabilising one
  # collects ≈ 90–98 of at most 100.
  first, final = returns[:, 0].mean(), returns[:, -1].mean()
  assert final > 80.0, returns
  assert final > first + 30.0, returns
  it = metrics["iterations"]
  for name in ("critic_loss", "actor_loss", "alpha", "q_mean", "entropy"):
    assert np.all(np.isfinite(it[name])), name
  assert "model_nll" not in it and "branch_length" not in it
