"""Tests for mgjax.envs.distractors: distractor dimensions leave the env's reward, done and
observation untouched, follow x' = tanh(W x + b) and reach the config and the trainer."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mgjax import envs
from mgjax.algorithms import make_config, make_trainer
from mgjax.config import Config, ConfigError
from mgjax.envs import distractors

D = 5


def _rollouts(infos, num_envs, num_steps, key, scale=3.0):
  """The same random actions through a TrainingEnv of each info, all in one jitted scan
  -> per info (obs acted on [T, B, n], final_obs, reward, termination, done, predicted)."""
  train_envs = [envs.TrainingEnv(info, num_envs) for info in infos]
  action_size = infos[0].action_size

  def run(key):
    key_reset, key_steps = jax.random.split(key)

    def body(states, k):
      action = scale * jax.random.uniform(k, (num_envs, action_size), minval=-1.0, maxval=1.0)
      outs, nstates = [], []
      for info, env, state in zip(infos, train_envs, states):
        nstate = env.step(state, action)
        predicted = jax.vmap(info.termination_fn)(nstate.info["final_obs"])
        outs.append(
          (
            state.obs,
            nstate.info["final_obs"],
            nstate.reward,
            nstate.info["termination"],
            nstate.done,
            predicted,
          )
        )
        nstates.append(nstate)
      return nstates, outs

    states = [env.reset(key_reset) for env in train_envs]
    return jax.lax.scan(body, states, jax.random.split(key_steps, num_steps))[1]

  return jax.tree.map(np.asarray, jax.jit(run)(key))


def test_distractor_map_is_fixed_and_scaled():
  w, b = distractors.distractor_map(200)
  w2, b2 = distractors.distractor_map(200)
  np.testing.assert_array_equal(w, w2)
  np.testing.assert_array_equal(b, b2)
  assert w.shape == (200, 200) and b.shape == (200,) and w.dtype == np.float32
  # W_ij ~ N(0, g²/D): D · var(W) ≈ g² = 2.25 over 40000 draws; b ~ N(0, 0.1²).
  assert abs(200 * w.var() - 2.25) < 0.1
  assert abs(b.std() - 0.1) < 0.02
  assert not np.array_equal(
    distractors.distractor_map(D, seed=1)[0], distractors.distractor_map(D)[0]
  )


def test_distractor_step_is_the_documented_law():
  w, b = distractors.distractor_map(D)
  x = np.linspace(-1.0, 1.0, D, dtype=np.float32)
  got = jax.jit(distractors.distractor_step)(w, b, x)
  np.testing.assert_allclose(got, np.tanh(w @ x + b), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dims", [5, 10, 15])
def test_distractors_keep_moving(dims):
  # From 8 starts, 300 steps of x' = tanh(W x + b): the last 100 still spread over [-1, 1]
  # (a standard deviation over time of ≈ 0.3–0.6 per entry), no fixed point reached.
  w, b = distractors.distractor_map(dims)
  x = np.random.default_rng(0).uniform(-1.0, 1.0, (8, dims)).astype(np.float32)
  xs = []
  for _ in range(300):
    x = np.tanh(x @ w.T + b)
    xs.append(x)
  assert np.all(np.std(xs[-100:], axis=0).mean(axis=-1) > 0.2)


def test_pointmass_with_distractors_keeps_rewards_terminations_and_obs():
  # Actions up to 3 (clipped to 1) push the point out: terminations, resets and time limits.
  plain = envs.make_env("pointmass", episode_length=30)
  info = envs.make_env("pointmass", episode_length=30, distractor_dims=D)
  assert (info.obs_size, info.action_size, info.episode_length) == (4 + D, 2, 30)
  assert info.env.observation_size == 4 + D
  (p_obs, p_final, p_reward, p_term, p_done, _), (obs, final, reward, term, done, predicted) = (
    _rollouts([plain, info], 16, 90, jax.random.key(0))
  )
  assert obs.shape == (90, 16, 4 + D) and final.shape == (90, 16, 4 + D)
  assert p_term.sum() > 10 and p_done.sum() > p_term.sum()  # both ways an episode ends
  np.testing.assert_array_equal(reward, p_reward)
  np.testing.assert_array_equal(term, p_term)
  np.testing.assert_array_equal(done, p_done)
  np.testing.assert_array_equal(predicted, term)  # termination_fn ignores the distractors
  np.testing.assert_array_equal(obs[..., :4], p_obs)
  np.testing.assert_array_equal(final[..., :4], p_final)
  # Each step: x_{t+1} = tanh(W x_t + b) from the distractors of the observation acted on,
  # also across resets (final_obs is before the reset; obs a fresh x_0 where done).
  w, b = distractors.distractor_map(D)
  x, x_next = obs[..., 4:], final[..., 4:]
  np.testing.assert_allclose(x_next, np.tanh(x @ w.T + b), rtol=1e-6, atol=1e-6)
  assert np.all(np.abs(obs[..., 4:]) <= 1.0) and np.all(np.abs(final[..., 4:]) <= 1.0)
  # They move: not a fixed point, and the resets draw x_0 afresh.
  assert np.abs(np.diff(x, axis=0)).mean() > 0.05
  assert len(np.unique(obs[0, :, 4])) == 16


def test_reset_draws_x0_uniformly_from_the_reset_key():
  info = envs.make_env("pointmass", distractor_dims=D)
  plain = envs.make_env("pointmass")
  keys = jax.random.split(jax.random.key(1), 256)
  obs = np.asarray(jax.jit(jax.vmap(info.env.reset))(keys).obs)
  np.testing.assert_array_equal(obs[:, :4], jax.jit(jax.vmap(plain.env.reset))(keys).obs)
  x0 = obs[:, 4:]
  assert np.all(np.abs(x0) <= 1.0)
  assert abs(x0.mean()) < 0.05 and abs(x0.var() - 1 / 3) < 0.03  # U[-1, 1]: 0 and 1/3
  again = jax.jit(info.env.reset)(keys[0]).obs
  np.testing.assert_array_equal(again, obs[0])


def test_termination_fn_reads_only_the_env_entries():
  info = envs.make_env("pointmass", distractor_dims=3)
  inside = jnp.array([0.5, 0.5, 0.0, 0.0, 1.0, -1.0, 1.0])
  outside = jnp.array([3.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
  assert float(info.termination_fn(inside)) == 0.0
  assert float(info.termination_fn(outside)) == 1.0


def test_evaluate_sees_the_same_episodes():
  plain = envs.make_env("pointmass")
  info = envs.make_env("pointmass", distractor_dims=D)

  def stabilising(obs):
    return jnp.clip(-obs[:, :2] - 1.5 * obs[:, 2:4], -1.0, 1.0)

  def outward(obs):
    return jnp.sign(obs[:, :2]) + (obs[:, :2] == 0)

  key = jax.random.key(2)
  for act in (stabilising, outward):
    want = jax.jit(lambda k, a=act: envs.evaluate(plain, a, k, 16))(key)
    got = jax.jit(lambda k, a=act: envs.evaluate(info, a, k, 16))(key)
    np.testing.assert_array_equal(got["returns"], want["returns"])
    np.testing.assert_array_equal(got["lengths"], want["lengths"])
  states, length, _ = jax.jit(lambda k: envs.play_episode(info, outward, k))(key)
  assert states.obs.shape == (101, 4 + D) and int(length) < 100


def test_zero_distractors_is_the_env_itself():
  info = envs.make_env("pointmass", distractor_dims=0)
  assert type(info.env) is envs.PointMass  # no wrapper: the same ops in every step
  assert info.obs_size == 4 and info.termination_fn == info.env.termination
  assert envs.make_env("hopper", distractor_dims=0).env.__class__.__name__ == "Hopper"


def test_bad_distractor_dims_raise():
  with pytest.raises(ValueError, match=r"^distractor_dims=-1: must be a non-negative integer$"):
    envs.make_env("pointmass", distractor_dims=-1)
  with pytest.raises(ValueError, match="distractor_dims=0: must be positive"):
    distractors.Distractors(envs.PointMass(), 0)


def test_config_field_validated_defaulted_and_bound():
  with pytest.raises(ConfigError) as err:
    make_config(env="pointmass", distractor_dims=-1)
  assert str(err.value) == "distractor_dims=-1: must be non-negative"
  assert Config().distractor_dims == 0
  old = {k: v for k, v in Config(env="pointmass").to_dict().items() if k != "distractor_dims"}
  assert Config.from_dict(old).distractor_dims == 0  # a config.json of an earlier version
  trainer = make_trainer(make_config(algo="mg", env="pointmass", distractor_dims=3))
  assert trainer.setup.env.obs_size == 7 and trainer.setup.train_env.info.obs_size == 7


# One MJX program: an MJX env with and without distractors, through terminations and resets;
# inverted_pendulum, MJX's cheapest env to compile (the wrapper is the same for every env).
def test_mjx_env_with_distractors_keeps_rewards_and_terminations():
  plain = envs.make_env("inverted_pendulum", backend="mjx", episode_length=60)
  info = envs.make_env("inverted_pendulum", backend="mjx", episode_length=60, distractor_dims=D)
  n = plain.obs_size
  assert info.obs_size == n + D == 4 + D
  (p_obs, p_final, p_reward, p_term, _, _), (obs, final, reward, term, _, predicted) = _rollouts(
    [plain, info], 8, 100, jax.random.key(3), scale=1.0
  )
  assert p_term.sum() >= 3
  np.testing.assert_array_equal(term, p_term)
  np.testing.assert_array_equal(predicted, term)
  np.testing.assert_array_equal(reward, p_reward)
  np.testing.assert_array_equal(obs[..., :n], p_obs)
  np.testing.assert_array_equal(final[..., :n], p_final)
  w, b = distractors.distractor_map(D)
  np.testing.assert_allclose(final[..., n:], np.tanh(obs[..., n:] @ w.T + b), rtol=1e-6, atol=1e-6)
