"""Tests for mgjax.train (the collect–fit–optimise loop) and mgjax.config.validate.

Compiling a trainer takes 10–20 s on a 2-core CPU, so compiled programs are shared through
module-scoped fixtures: one small `mg` trainer for determinism and tracing, one stage setup, and
one vmapped end-to-end run per algorithm on the fast point-mass env.
"""
import dataclasses
import re

import jax

jax.config.update("jax_numpy_rank_promotion", "raise")

import chex  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from mgjax import networks, train  # noqa: E402
from mgjax.buffer import buffer_add  # noqa: E402
from mgjax.config import Config, ConfigError, validate  # noqa: E402

# A tiny mg run: 4 envs × 8 steps × 2 iterations per chunk, total_steps = 3 chunks.
_SMALL = Config(algo="mg", env="pointmass", total_steps=3 * 4 * 8 * 2, num_envs=4,
                rollout_length=8, eval_every=2, num_eval_envs=2, policy_hidden=(16,),
                value_hidden=(16,), model_hidden=(16,), ppo_epochs=1, num_minibatches=2,
                buffer_size=128, mle_steps=2, mle_batch=16, mg_steps=1, mg_rollouts=8,
                mg_horizon=3, model_rollouts=8, model_horizon=3, model_updates=1)

# ≈ 20k env steps: 16 envs × 32 steps × 5 iterations per chunk, round(20000 / 2560) = 8 chunks.
_E2E = dict(env="pointmass", total_steps=20000, num_envs=16, rollout_length=32, eval_every=5,
            num_eval_envs=8, model_hidden=(64, 64), mle_steps=20, mg_steps=2, mg_rollouts=64,
            model_rollouts=128, model_updates=2)
_E2E_SEEDS = 2


def _leaves_equal(a, b) -> bool:
  return all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


# ---------------------------------------------------------------- determinism and tracing
@pytest.fixture(scope="module")
def small_chunks():
  """Three chunks of the small trainer, vmapped over keys (k0, k0, k1), jitted once."""
  trainer = train.make_trainer(_SMALL)
  assert trainer.num_chunks == 3

  @chex.assert_max_traces(n=1)
  def chunk(state):
    return trainer.chunk(state)

  init = jax.jit(jax.vmap(trainer.init))
  chunk_jit = jax.jit(jax.vmap(chunk))
  keys = jnp.stack([jax.random.key(0), jax.random.key(0), jax.random.key(1)])
  state = init(keys)
  history = []
  for _ in range(trainer.num_chunks):  # a retrace here would raise in `chunk`
    state, metrics = chunk_jit(state)
    history.append(metrics)
  return init, chunk_jit, keys, state, history


def test_chunk_traces_once_over_several_chunks(small_chunks):
  init, chunk_jit, keys, state, history = small_chunks
  assert len(history) == 3
  # The last chunk's evaluation sits at iteration 3 chunks × 2 = 6, after 6 × 32 env steps.
  np.testing.assert_array_equal(history[-1]["eval"]["iteration"], [6, 6, 6])
  np.testing.assert_array_equal(state.env_steps, [192, 192, 192])
  chunk_jit(init(keys))  # a fresh state of the same structure: still no retrace


def test_same_key_identical_different_keys_differ(small_chunks):
  init, chunk_jit, keys, state, _ = small_chunks
  lane = lambda tree, i: jax.tree.map(lambda x: np.asarray(x[i]), tree)
  params = state.agent_params
  # Lanes 0 and 1 share a key: bit-identical parameters, model and observation statistics.
  assert _leaves_equal(lane(params, 0), lane(params, 1))
  assert _leaves_equal(lane(state.model_params, 0), lane(state.model_params, 1))
  assert _leaves_equal(lane(state.obs_stats, 0), lane(state.obs_stats, 1))
  # Lane 2 has its own key: every parameter array differs.
  for x, y in zip(jax.tree.leaves(lane(params, 0)), jax.tree.leaves(lane(params, 2))):
    assert not np.array_equal(x, y)
  # Running the same key again (a new call of the compiled chunk) reproduces the state.
  again, _ = chunk_jit(init(keys))
  first, _ = chunk_jit(init(keys))
  assert _leaves_equal(again.agent_params, first.agent_params)


# ------------------------------------------------------------------------------ stages
_STAGE = dataclasses.replace(_SMALL, num_envs=8, rollout_length=32, total_steps=8 * 32 * 2,
                             episode_length=10, buffer_size=256, mle_steps=300, mle_batch=64,
                             model_hidden=(32, 32))


@pytest.fixture(scope="module")
def stage_setup():
  """Components, an initial state and one collected batch of the stage config."""
  comp = train.make_components(_STAGE)
  state = jax.jit(lambda k: train.init_state(comp, k))(jax.random.key(2))
  env_state, batch = jax.jit(lambda s, k: train.collect(comp, s, k))(state, jax.random.key(3))
  return comp, state, env_state, batch


def test_collect_shapes_and_resets(stage_setup):
  comp, state, env_state, batch = stage_setup
  t, n = _STAGE.rollout_length, _STAGE.num_envs
  assert batch.obs.shape == batch.next_obs.shape == (t, n, 4)
  assert batch.action.shape == (t, n, 2)
  assert batch.reward.shape == batch.termination.shape == batch.truncation.shape == (t, n)
  assert env_state.obs.shape == (n, 4)
  done = np.asarray(jnp.maximum(batch.termination, batch.truncation)) > 0
  # episode_length 10: every env is cut (or terminates) at least 3 times in 32 steps.
  assert np.all(done.sum(0) >= 3)
  assert np.all(batch.truncation[9] + batch.termination[:10].max(0) > 0)
  # next_obs is the observation the step led to: the next obs unless the episode reset there.
  follows = np.all(np.asarray(batch.obs[1:]) == np.asarray(batch.next_obs[:-1]), axis=-1)
  np.testing.assert_array_equal(follows, ~done[:-1])
  np.testing.assert_array_equal(np.all(env_state.obs == batch.next_obs[-1], -1), ~done[-1])
  # Time-limit cuts are not terminations, and pointmass terminations match its known fn.
  assert not np.any((batch.truncation > 0) & (batch.termination > 0))
  np.testing.assert_array_equal(
      batch.termination,
      jax.vmap(jax.vmap(comp.env.termination_fn))(batch.next_obs))
  assert state.env_steps == 0


def test_real_advantages_shapes(stage_setup):
  comp, state, _, batch = stage_setup
  adv, targets = jax.jit(lambda s, b: train.real_advantages(comp, s, b))(state, batch)
  assert adv.shape == targets.shape == (_STAGE.rollout_length, _STAGE.num_envs)
  assert np.all(np.isfinite(adv)) and np.all(np.isfinite(targets))


def test_fit_model_mle_lowers_nll_on_a_fixed_buffer(stage_setup):
  comp, state, _, batch = stage_setup
  flat = lambda x: x.reshape((-1,) + x.shape[2:])
  rows = {"obs": flat(batch.obs), "action": flat(batch.action),
          "reward": flat(batch.reward), "next_obs": flat(batch.next_obs)}
  stats = networks.update_stats(state.obs_stats, batch.obs)
  state = state.replace(obs_stats=stats, buffer=buffer_add(state.buffer, rows))
  assert int(state.buffer.size) == 256  # the whole batch, the whole buffer

  @jax.jit
  def nll(params):
    return networks.model_nll(comp.model_net, stats, params, rows["obs"], rows["action"],
                              rows["next_obs"], rows["reward"], _STAGE.action_mode)

  before = float(nll(state.model_params))
  fitted, mean_loss = jax.jit(lambda s, k: train.fit_model_mle(comp, s, k))(
      state, jax.random.key(4))
  after = float(nll(fitted.model_params))
  assert np.isfinite(float(mean_loss))
  # Point-mass dynamics are deterministic and linear in (obs, action): 300 Adam steps take the
  # per-dimension NLL from ≈ 1.9 nats to ≈ −0.9.
  assert after < before - 1.0, (before, after)
  assert after < 0.0, (before, after)


def test_mg_start_batch_draws_only_the_latest_batch(stage_setup):
  """mg_start="batch" starts MG rollouts on the newest batch_steps rows (the states g_R is
  computed on); "buffer" draws from all real data."""
  comp, state, _, _ = stage_setup
  steps = _SMALL.batch_steps  # 32 rows per iteration; the buffer holds 128
  buf = state.buffer
  for i in range(3):  # three batches whose obs are their index: 0, 1, 2
    rows = {k: jnp.full((steps,) + v.shape[1:], float(i), v.dtype)
            for k, v in buf.data.items()}
    buf = buffer_add(buf, rows)
  key = jax.random.key(5)
  config = dataclasses.replace(_SMALL, mg_rollouts=256)
  recent = np.asarray(train.mg_start_obs(dataclasses.replace(config, mg_start="batch"),
                                         buf, key))
  everything = np.asarray(train.mg_start_obs(dataclasses.replace(config, mg_start="buffer"),
                                             buf, key))
  assert recent.shape == everything.shape == (256,) + buf.data["obs"].shape[1:]
  np.testing.assert_array_equal(recent, 2.0)
  assert set(np.unique(everything)) == {0.0, 1.0, 2.0}


def test_average_real_grad_is_the_bias_corrected_running_mean(stage_setup):
  """real_grad_ema = β: the MG target after g_R^1, g_R^2 is (β g^1 + g^2) / (1 + β);
  β = 0 returns the latest g_R."""
  comp, state, _, _ = stage_setup
  g = lambda v: jax.tree.map(lambda p: jnp.full_like(p, v), state.agent_params["policy"])
  for beta, expect in ((0.5, [1.0, (0.5 * 1.0 + 3.0) / 1.5]), (0.0, [1.0, 3.0])):
    s = state.replace(hparams={**state.hparams, "real_grad_ema": jnp.float32(beta)},
                      real_grad_avg=g(0.0))
    for value, want in zip((1.0, 3.0), expect):
      s = s.replace(iteration=s.iteration + 1)
      s, target = train.average_real_grad(s, g(value))
      for leaf in jax.tree.leaves(target):
        np.testing.assert_allclose(leaf, want, rtol=1e-6)


# --------------------------------------------------------------------- end to end, make_train
_E2E_KEYS = (42, 43)


@pytest.fixture(scope="module")
def e2e_runs():
  """algo -> (final_state, metrics) of jax.jit(jax.vmap(make_train(config)))(2 keys)."""
  runs = {}
  keys = jnp.stack([jax.random.key(k) for k in _E2E_KEYS])
  for algo in ("mg", "mle", "ppo"):
    train_fn = train.make_train(Config(algo=algo, **_E2E))
    runs[algo] = jax.block_until_ready(jax.jit(jax.vmap(train_fn))(keys))
  return runs


@pytest.fixture(scope="module")
def initial_returns():
  """Eval return of the untrained policy per seed, [seeds]. `init_state` draws the policy
  parameters from the key alone, so the three algorithms start from this same policy."""
  comp = train.make_components(Config(algo="ppo", **_E2E))
  keys = jnp.stack([jax.random.key(k) for k in _E2E_KEYS])
  fn = lambda k: train.evaluate(comp, train.init_state(comp, k), k)["eval_return"]
  return np.asarray(jax.jit(jax.vmap(fn))(keys))


@pytest.mark.parametrize("algo", ["mg", "mle", "ppo"])
def test_make_train_vmapped_metric_shapes(e2e_runs, algo):
  final_state, metrics = e2e_runs[algo]
  config = Config(algo=algo, **_E2E)
  seeds, chunks, every = _E2E_SEEDS, config.num_chunks, config.eval_every
  assert chunks == 8
  per_iteration = {"train_return", "policy_loss", "value_loss", "entropy", "env_steps",
                   "model_nll", "mle_loss", "mg_loss", "mg_grad_norm", "model_grad_cosine"}
  assert set(metrics["iterations"]) == per_iteration
  for name, x in metrics["iterations"].items():
    assert x.shape == (seeds, chunks, every), name
  for name in ("eval_return", "eval_length", "env_steps", "iteration"):
    assert metrics["eval"][name].shape == (seeds, chunks), name
  # 8 chunks × 5 iterations × 512 env steps = 20480 per seed.
  np.testing.assert_array_equal(metrics["eval"]["env_steps"][:, -1], [20480, 20480])
  np.testing.assert_array_equal(final_state.iteration, [40, 40])


@pytest.mark.parametrize("algo", ["mg", "mle", "ppo"])
def test_end_to_end_improves_return_on_pointmass(e2e_runs, initial_returns, algo):
  _, metrics = e2e_runs[algo]
  returns = np.asarray(metrics["eval"]["eval_return"])  # [seeds, chunks]
  assert np.all(np.isfinite(returns))
  initial, final = initial_returns.mean(), returns[:, -1].mean()
  # Episodes last ≤ 100 steps with reward ≤ 1 per step: a stabilising policy scores ≈ 90–98,
  # the untrained one drifts out of bounds within a few tens of steps.
  assert initial < 50.0, initial_returns  # ≈ 34 for these keys
  assert final > 80.0, (algo, initial_returns, returns)
  assert final > initial + 40.0, (algo, initial_returns, returns)


def test_end_to_end_seeds_differ(e2e_runs):
  for algo, (final_state, metrics) in e2e_runs.items():
    leaves = jax.tree.leaves(final_state.agent_params)
    assert any(not np.array_equal(x[0], x[1]) for x in leaves), algo
    assert not np.array_equal(metrics["iterations"]["policy_loss"][0],
                              metrics["iterations"]["policy_loss"][1]), algo


def test_end_to_end_diagnostics_per_algorithm(e2e_runs):
  it = {algo: metrics["iterations"] for algo, (_, metrics) in e2e_runs.items()}
  for algo in ("mg", "mle"):
    assert np.all(np.isfinite(it[algo]["model_grad_cosine"])), algo
    assert np.all(np.abs(it[algo]["model_grad_cosine"]) <= 1.0 + 1e-5), algo
    assert np.all(np.isfinite(it[algo]["model_nll"])), algo
  assert np.all(np.isnan(it["ppo"]["model_grad_cosine"]))
  assert np.all(np.isnan(it["ppo"]["model_nll"]))
  assert np.all(np.isfinite(it["mg"]["mg_loss"]))
  assert np.all(np.isnan(it["mle"]["mg_loss"])) and np.all(np.isnan(it["ppo"]["mg_loss"]))


# ------------------------------------------------------------------------------ validate
def test_validate_accepts_defaults_and_the_test_configs():
  for config in (Config(), _SMALL, _STAGE, *(Config(algo=a, **_E2E) for a in ("mle", "ppo"))):
    assert validate(config) is config


@pytest.mark.parametrize("changes, expected", [
    (dict(algo="foo"), "algo='foo'"),
    (dict(env="nope"), "env='nope'"),
    (dict(total_steps=0), "total_steps=0"),
    (dict(num_envs=-1), "num_envs=-1"),
    # ppo minibatches split num_envs × rollout_length = 3 × 5 = 15 rows: 4 does not divide it.
    (dict(algo="ppo", num_envs=3, rollout_length=5, num_minibatches=4),
     "num_minibatches=4: does not divide num_envs*rollout_length = 15"),
    # mg/mle minibatches split model_rollouts × model_horizon = 512 × 10 = 5120 rows.
    (dict(algo="mle", num_minibatches=3),
     "num_minibatches=3: does not divide model_rollouts*model_horizon = 5120"),
    # One iteration adds num_envs × rollout_length = 32 × 32 = 1024 rows to the buffer.
    (dict(buffer_size=1000), "buffer_size=1000: smaller than one iteration's batch"),
    (dict(mg_start="recent"), "mg_start='recent': choose one of buffer, batch"),
    (dict(real_grad_ema=1.0), "real_grad_ema=1.0: must lie in [0, 1)"),
])
def test_validate_names_field_and_value(changes, expected):
  with pytest.raises(ConfigError, match=re.escape(expected)):
    validate(Config(**changes))
