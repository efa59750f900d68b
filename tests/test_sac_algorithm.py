"""Tests for mgjax.algorithms.sac: model-free SAC in MBPO's loop (`--algo sac`)."""

import jax
import numpy as np
import pytest
from chunked import run_chunks

from mgjax import envs
from mgjax.algorithms import make_config, mbpo, run_schedule, sac

# 500 random steps, then 9 chunks of 10 iterations x 50 env steps, one update per step.
_SMALL = dict(
  algo="sac",
  env="pointmass",
  exploration_steps=500,
  rollout_length=50,
  eval_every=10,
  sac_hidden=(64, 64),
  sac_batch=128,
  num_eval_envs=8,
  sac_learning_rate=1e-3,
  total_steps=5000,
)
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
  su = sac.setup(make_config(**_SMALL), envs.make_env("pointmass"))
  state = jax.jit(lambda k: sac.init(su, k))(jax.random.key(0))
  assert int(state.buffer.size) == 500 and int(state.env_steps) == 500
  batch = sac.real_batch(su, state, jax.random.key(1))
  assert batch.obs.shape == (128, 4) and np.all(np.asarray(batch.truncation) == 0)
  stored = {tuple(np.round(r, 6)) for r in np.asarray(state.buffer.data["obs"][:500])}
  assert all(tuple(np.round(r, 6)) in stored for r in np.asarray(batch.obs))


def test_mbpo_shares_the_sac_loop():
  assert mbpo.collect_and_update is sac.collect_and_update
  assert mbpo.evaluate is sac.evaluate and mbpo.env_step is sac.env_step


@pytest.fixture(scope="module")
def e2e():
  return run_chunks(make_config(**_SMALL), _SEEDS)


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
