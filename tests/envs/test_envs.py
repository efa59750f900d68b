"""Tests for mgjax.envs: point mass, termination functions, auto-reset bookkeeping, evaluate."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mgjax import envs
from mgjax.envs.core import batched_step


def _random_rollout(info, num_envs, num_steps, key, scale=1.0, group=0):
  """Random actions through TrainingEnv in one scan -> (final state, per-step outputs)."""
  train_env = envs.TrainingEnv(info, num_envs, group)

  def run(key):
    key_reset, key_steps = jax.random.split(key)

    def body(state, k):
      action = scale * jax.random.uniform(k, (num_envs, info.action_size), minval=-1.0, maxval=1.0)
      state = train_env.step(state, action)
      predicted = jax.vmap(info.termination_fn)(state.info["final_obs"])
      return state, (predicted, state.info["termination"], state.done, state.obs)

    return jax.lax.scan(body, train_env.reset(key_reset), jax.random.split(key_steps, num_steps))

  return jax.jit(run)(key)


def test_unknown_env_raises_with_name():
  with pytest.raises(ValueError, match="env='no_such_env': unknown environment"):
    envs.make_env("no_such_env")


def test_bad_episode_length_raises():
  with pytest.raises(ValueError, match="episode_length=0"):
    envs.make_env("pointmass", episode_length=0)


def test_env_names():
  assert "pointmass" in envs.ENV_NAMES and "hopper" in envs.ENV_NAMES
  assert len(envs.ENV_NAMES) == 11


def test_pointmass_reset_and_step_shapes():
  info = envs.make_env("pointmass")
  assert (info.obs_size, info.action_size, info.episode_length) == (4, 2, 100)
  state = jax.jit(info.env.reset)(jax.random.key(0))
  assert state.obs.shape == (4,)
  assert np.all(np.abs(state.obs[:2]) <= 1.0) and np.all(np.abs(state.obs[2:]) <= 0.5)
  p0, v0 = np.asarray(state.obs[:2]), np.asarray(state.obs[2:])
  state = jax.jit(info.env.step)(state, jnp.array([1.0, -3.0]))
  assert state.obs.shape == (4,) and state.reward.shape == () and state.done.shape == ()
  # v' = v0 + dt · clip(a) = v0 + (0.1, -0.1); p' = p0 + dt · v'.
  v1 = v0 + np.array([0.1, -0.1])
  np.testing.assert_allclose(state.obs[2:], v1, rtol=1e-6)
  np.testing.assert_allclose(state.obs[:2], p0 + 0.1 * v1, rtol=1e-6)


def test_pointmass_termination_fn_matches_training_env():
  info = envs.make_env("pointmass", episode_length=50)
  state, (predicted, termination, done, _) = _random_rollout(info, 32, 200, jax.random.key(1))
  np.testing.assert_array_equal(predicted, termination)
  assert termination.sum() > 10
  assert np.all(done >= termination)
  assert state.info["episodes_done"].min() >= 4  # 200 steps with a 50-step limit.


def test_truncation_at_time_limit():
  # Zero actions: the point drifts at its initial velocity, p_t = p0 + 0.1 t v0, and pays
  # r_t = 1 − 0.25 |p_t|². In 5 steps it moves at most 0.5·|v0| ≤ 0.36, so from |p0| ≤ √2
  # it stays inside |p| < 2 and the episode ends by the time limit alone.
  info = envs.make_env("pointmass", episode_length=5)
  train_env = envs.TrainingEnv(info, 4)
  state = train_env.reset(jax.random.key(2))
  start_obs = state.obs
  step = jax.jit(train_env.step)
  zeros = jnp.zeros((4, 2))
  for t in range(1, 5):
    state = step(state, zeros)
    np.testing.assert_array_equal(state.done, 0.0)
    np.testing.assert_array_equal(state.info["steps"], t)
  p0, v0 = start_obs[:, :2], start_obs[:, 2:]
  rewards = [1.0 - 0.25 * jnp.sum((p0 + 0.1 * t * v0) ** 2, axis=-1) for t in range(1, 6)]
  np.testing.assert_allclose(state.info["episode_return"], sum(rewards[:4]), rtol=1e-5)
  state = step(state, zeros)
  np.testing.assert_array_equal(state.done, 1.0)
  np.testing.assert_array_equal(state.info["truncation"], 1.0)
  np.testing.assert_array_equal(state.info["termination"], 0.0)
  np.testing.assert_array_equal(state.info["steps"], 0)
  np.testing.assert_array_equal(state.info["episode_return"], 0.0)
  np.testing.assert_array_equal(state.info["episode_length"], 0)
  np.testing.assert_allclose(state.info["last_episode_return"], sum(rewards), rtol=1e-5)
  np.testing.assert_array_equal(state.info["last_episode_length"], 5)
  np.testing.assert_array_equal(state.info["episodes_done"], 1)
  np.testing.assert_allclose(state.info["final_obs"][:, :2], p0 + 0.5 * v0, atol=1e-6)
  np.testing.assert_allclose(state.info["final_obs"][:, 2:], v0, atol=1e-7)
  np.testing.assert_array_equal(state.obs, state.info["first_obs"])


def test_termination_resets_to_cached_state():
  # Full thrust away from the origin: |p| passes 2 within ~20 steps, well before the limit.
  info = envs.make_env("pointmass", episode_length=100)
  train_env = envs.TrainingEnv(info, 3)
  state = train_env.reset(jax.random.key(3))
  state = train_env.refresh_resets(state, jax.random.key(4))
  assert not np.allclose(state.info["first_obs"], state.obs)
  step = jax.jit(train_env.step)
  total = np.zeros(3)
  for _ in range(40):
    prev = state
    state = step(state, jnp.sign(state.obs[:, :2]) + (state.obs[:, :2] == 0))
    total += np.asarray(state.reward) * (prev.info["episodes_done"] == 0)
    if np.all(state.info["episodes_done"] >= 1):
      break
  ended = np.asarray(state.done) == 1.0
  assert ended.any()
  np.testing.assert_array_equal(state.info["termination"][ended], 1.0)
  np.testing.assert_array_equal(state.info["truncation"][ended], 0.0)
  final_pos = state.info["final_obs"][ended, :2]
  assert np.all(np.linalg.norm(final_pos, axis=-1) > 2.0)
  np.testing.assert_array_equal(state.obs[ended], state.info["first_obs"][ended])
  np.testing.assert_allclose(state.info["last_episode_return"][ended], total[ended], rtol=1e-5)
  np.testing.assert_array_equal(state.info["episode_return"][ended], 0.0)


def test_evaluate_pointmass_separates_policies():
  info = envs.make_env("pointmass")
  evaluate = jax.jit(envs.evaluate, static_argnums=(0, 1, 3))

  def zero(obs):
    return jnp.zeros((obs.shape[0], 2))

  def noisy(obs):  # deterministic in obs, but scrambled like a random policy
    return jnp.sin(1e4 * obs[:, :2] + 1e3 * obs[:, 2:])

  def stabilising(obs):
    return jnp.clip(-obs[:, :2] - 1.5 * obs[:, 2:], -1.0, 1.0)

  key = jax.random.key(5)
  zero_out = evaluate(info, zero, key, 64)
  noisy_out = evaluate(info, noisy, key, 64)
  good_out = evaluate(info, stabilising, key, 64)
  assert zero_out["returns"].shape == (64,)
  # Without control the initial velocity carries the point out; the stabilising controller
  # always recovers (stopping distance |v0|²/2 ≤ 0.25) and lives the whole episode.
  assert float(zero_out["length"]) < 80.0
  assert float(noisy_out["length"]) < 80.0
  assert float(good_out["length"]) == 100.0
  assert float(good_out["return"]) > float(zero_out["return"]) + 30.0
  assert float(good_out["return"]) > float(noisy_out["return"]) + 30.0
  np.testing.assert_allclose(zero_out["return"], zero_out["returns"].mean(), rtol=1e-6)


def test_evaluate_vmaps_over_keys():
  info = envs.make_env("pointmass", episode_length=20)
  act = lambda obs: jnp.clip(-obs[:, :2], -1.0, 1.0)  # noqa: E731
  keys = jax.random.split(jax.random.key(6), 3)
  out = jax.jit(jax.vmap(lambda k: envs.evaluate(info, act, k, 8)))(keys)
  assert out["returns"].shape == (3, 8)
  assert len(set(np.asarray(out["return"]).tolist())) == 3


def test_grouped_steps_follow_the_same_trajectories():
  # 24 envs stepped 8 at a time (3 groups in sequence) against all 24 at once, through
  # terminations, time limits and resets: the same episodes, to float rounding.
  info = envs.make_env("pointmass", episode_length=30)
  flat, (_, term, done, obs) = _random_rollout(info, 24, 120, jax.random.key(5), scale=3.0)
  grouped, (_, g_term, g_done, g_obs) = _random_rollout(
    info, 24, 120, jax.random.key(5), scale=3.0, group=8
  )
  assert term.sum() > 10 and done.sum() > term.sum()  # both ways an episode can end
  np.testing.assert_array_equal(g_term, term)
  np.testing.assert_array_equal(g_done, done)
  np.testing.assert_allclose(g_obs, obs, rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(grouped.info["episodes_done"], flat.info["episodes_done"])
  np.testing.assert_allclose(
    grouped.info["last_episode_return"], flat.info["last_episode_return"], rtol=1e-5
  )


def test_a_group_must_divide_the_envs():
  info = envs.make_env("pointmass")
  with pytest.raises(ValueError, match="group=5: must be 0 or divide num_envs = 8"):
    envs.TrainingEnv(info, 8, 5)
  state = jax.vmap(info.env.reset)(jax.random.split(jax.random.key(0), 6))
  with pytest.raises(ValueError, match="group=4: does not divide the 6 envs"):
    batched_step(info.env, state, jnp.zeros((6, 2)), 4)


def test_hopper_termination_fn_matches_mjx_env():
  info = envs.make_env("hopper", backend="mjx")
  assert (info.obs_size, info.action_size, info.episode_length) == (11, 3, 1000)
  _, (predicted, termination, _, _) = _random_rollout(info, 16, 100, jax.random.key(7))
  np.testing.assert_array_equal(predicted, termination)
  assert termination.sum() >= 5


def test_grouped_mjx_steps_keep_terminations():
  # MJX's State holds leaves of size zero, which the grouping reshapes too; on
  # inverted_pendulum, MJX's cheapest env to compile (the grouping is the env's own step).
  info = envs.make_env("inverted_pendulum", backend="mjx")
  _, (predicted, termination, _, _) = _random_rollout(info, 16, 100, jax.random.key(7), group=8)
  np.testing.assert_array_equal(predicted, termination)
  assert termination.sum() >= 5


# ------------------------------------------------------------ an env registered elsewhere
@pytest.fixture
def tight_pointmass():
  """A point mass that ends its episode past |p| = 1, registered as code outside mgjax
  would register it; unregistered afterwards."""
  from mgjax.envs import pointmass, registry

  env = pointmass.PointMass(max_position=1.0)
  name = envs.register_env(
    "tight-pointmass",
    lambda backend: pointmass.PointMass(max_position=1.0),
    env.termination,
    episode_length=40,
    presets={"mle": {"num_envs": 4}},
  )
  try:
    yield name
  finally:
    registry.REGISTERED.pop(name, None)


def test_a_registered_env_is_made_by_name(tight_pointmass):
  assert envs.is_known(tight_pointmass) and tight_pointmass in envs.env_names()
  info = envs.make_env(tight_pointmass)
  assert (info.obs_size, info.action_size, info.episode_length) == (4, 2, 40)
  # Its termination function is the one the env steps with.
  _, (predicted, termination, _, _) = _random_rollout(info, 32, 100, jax.random.key(3))
  np.testing.assert_array_equal(predicted, termination)
  assert termination.sum() > 10  # tighter than pointmass's own (max_position 2)
  with pytest.raises(ValueError, match="^name='tight-pointmass': registered already"):
    envs.register_env(tight_pointmass, lambda backend: None)
  for taken in ("pointmass", "hopper", "humanoidstandup"):  # mgjax's and brax's
    with pytest.raises(ValueError, match=f"^name='{taken}': an env of mgjax or brax"):
      envs.register_env(taken, lambda backend: None)


@pytest.mark.slow
def test_a_registered_env_trains_with_its_presets(tight_pointmass):
  from mgjax import algorithms

  config = algorithms.make_config(
    algo="mle",
    env=tight_pointmass,
    rollout_length=8,
    eval_every=2,
    total_steps=64,
    mle_steps=2,
    model_rollouts=16,
    model_horizon=2,
    num_minibatches=2,
    num_eval_envs=2,
  )
  assert config.num_envs == 4  # the env's preset for mle
  assert algorithms.make_config(algo="mg", env=tight_pointmass).num_envs == 32  # Config's
  state, metrics = jax.jit(algorithms.make_train(config))(jax.random.key(0))
  assert int(state.env_steps) == 64
  assert np.all(np.isfinite(metrics["iterations"]["model_nll"]))
  assert np.all(metrics["eval"]["eval_length"] <= 40)
