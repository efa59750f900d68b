"""Tests for mgjax.algorithms.mg (the collect–fit–optimise loop of mg, mle and ppo) and its MG
model stage, mgjax.algorithms.mg_model.

Compiling a trainer takes 10–20 s on a 2-core CPU, so compiled programs are shared through
module-scoped fixtures: one small `mg` trainer for determinism and tracing, one stage setup, and
one vmapped end-to-end run per algorithm on the fast point-mass env.
"""

import dataclasses
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tiny
from paths import ROOT

import mgjax
from mgjax import models
from mgjax.algorithms import mg, mg_model, run_schedule
from mgjax.buffer import buffer_add
from mgjax.config import Config
from mgjax.nets import update_stats

sys.path.insert(0, str(ROOT / "experiments"))
from lab import speed  # noqa: E402

# A tiny mg run, its stage variant and the end-to-end runs (tests/tiny.py).
SMALL = Config(algo="mg", **tiny.PPO_FAMILY)
E2E = tiny.E2E
E2E_SEEDS = 2
STAGE = Config(algo="mg", **tiny.STAGE)


def leaves_equal(a, b) -> bool:
  return all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


# ---------------------------------------------------------------- determinism and tracing
@pytest.fixture(scope="module")
def small_chunks():
  """Three chunks of the small trainer, vmapped over keys (k0, k0, k1), jitted once."""
  trainer = mgjax.make_trainer(SMALL)
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


@pytest.mark.slow
def test_chunk_traces_once_over_several_chunks(small_chunks):
  init, chunk_jit, keys, state, history = small_chunks
  assert isinstance(state, mg.MGState)
  assert len(history) == 3
  # The last chunk's evaluation sits at iteration 3 chunks × 2 = 6, after 6 × 32 env steps.
  np.testing.assert_array_equal(history[-1]["eval"]["iteration"], [6, 6, 6])
  np.testing.assert_array_equal(state.env_steps, [192, 192, 192])
  chunk_jit(init(keys))  # a fresh state of the same structure: still no retrace


@pytest.mark.slow
def test_same_key_identical_different_keys_differ(small_chunks):
  init, chunk_jit, keys, state, _ = small_chunks
  lane = lambda tree, i: jax.tree.map(lambda x: np.asarray(x[i]), tree)
  params = state.agent_params
  # Lanes 0 and 1 share a key: bit-identical parameters, model and observation statistics.
  assert leaves_equal(lane(params, 0), lane(params, 1))
  assert leaves_equal(lane(state.model_params, 0), lane(state.model_params, 1))
  assert leaves_equal(lane(state.obs_stats, 0), lane(state.obs_stats, 1))
  # Lane 2 has its own key: every parameter array differs.
  for x, y in zip(jax.tree.leaves(lane(params, 0)), jax.tree.leaves(lane(params, 2))):
    assert not np.array_equal(x, y)
  # Running the same key again (a new call of the compiled chunk) reproduces the state.
  again, _ = chunk_jit(init(keys))
  first, _ = chunk_jit(init(keys))
  assert leaves_equal(again.agent_params, first.agent_params)


# ------------------------------------------------------------------------------ stages
@pytest.fixture(scope="module")
def stage_setup():
  """The Setup, an initial state and one collected batch of the stage config."""
  su = mgjax.make_trainer(STAGE).setup
  state = jax.jit(lambda k: mg.init(su, k))(jax.random.key(2))

  @jax.jit
  def collect(state, key):
    policy = su.nets.make_policy(state.obs_stats)
    return mg.collect(
      su.train_env,
      policy,
      state.agent_params["policy"],
      state.env_state,
      key,
      rollout_length=su.run.rollout_length,
      action_mode=su.ppo.action_mode,
    )

  env_state, batch = collect(state, jax.random.key(3))
  return su, state, env_state, batch


@pytest.mark.slow
def test_iteration_stages_run_apart_on_the_data_they_have_in_the_iteration():
  # `mg.iteration` is `start`, `stages` and `finish`; every named stage, recorded with the
  # carry it gets (`speed.stage_inputs`) and run as a program of its own, gives what it gives
  # in the iteration (to float rounding: XLA fuses a program of its own differently).
  trainer = mgjax.make_trainer(SMALL)
  su = trainer.setup
  states = jax.jit(jax.vmap(trainer.init))(jnp.stack([jax.random.key(0), jax.random.key(1)]))
  stages, (after, metrics) = speed.stage_inputs(mg, su, states, outputs=True)
  assert list(stages) == [
    "collect",
    "advantages",
    "heldout",
    "nll_steps",
    "mg_steps",
    "alignment",
    "policy_updates",
  ]
  fn, args = stages["alignment"]
  np.testing.assert_allclose(
    jax.jit(jax.vmap(fn))(*args)["metrics"]["model_grad_cosine"],
    metrics["model_grad_cosine"],
    rtol=1e-5,
    atol=1e-6,
  )
  fn, args = stages["policy_updates"]
  alone = jax.jit(jax.vmap(fn))(*args)["state"]
  for x, y in zip(jax.tree.leaves(alone.agent_params), jax.tree.leaves(after.agent_params)):
    np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)
  mle = mgjax.make_trainer(dataclasses.replace(SMALL, algo="mle"))
  mle_state = jax.eval_shape(mle.init, jax.random.key(0))
  assert "mg_steps" not in [s.name for s in mg.stages(mle.setup, mle_state)]
  ppo = mgjax.make_trainer(dataclasses.replace(SMALL, algo="ppo"))
  ppo_state = jax.eval_shape(ppo.init, jax.random.key(0))
  names = [s.name for s in mg.stages(ppo.setup, ppo_state)]
  assert names == ["collect", "advantages", "policy_update"]


def test_init_state_types_per_algorithm(stage_setup):
  _, state, _, _ = stage_setup
  assert type(state) is mg.MGState
  assert jax.tree.structure(state.real_grad_avg) == jax.tree.structure(state.agent_params["policy"])
  for leaf in jax.tree.leaves(state.real_grad_avg):
    np.testing.assert_array_equal(leaf, 0.0)
  setup_of = lambda algo: mgjax.make_trainer(dataclasses.replace(STAGE, algo=algo)).setup
  mle = mg.init(setup_of("mle"), jax.random.key(2))
  ppo = mg.init(setup_of("ppo"), jax.random.key(2))
  assert type(mle) is mg.ModelState and type(ppo) is mg.PPOState
  assert not hasattr(ppo, "buffer") and not hasattr(ppo, "model_params")
  # The agent is drawn from the key alone: the same policy whatever the algorithm.
  assert leaves_equal(state.agent_params, mle.agent_params)
  assert leaves_equal(state.agent_params, ppo.agent_params)


def test_collect_shapes_and_resets(stage_setup):
  su, state, env_state, batch = stage_setup
  t, n = STAGE.rollout_length, STAGE.num_envs
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
    batch.termination, jax.vmap(jax.vmap(su.env.termination_fn))(batch.next_obs)
  )
  assert state.env_steps == 0


def test_real_advantages_shapes(stage_setup):
  su, state, _, batch = stage_setup

  @jax.jit
  def advantages(state, batch):
    return mg.real_advantages(
      su.nets.make_value_fn(state.obs_stats),
      state.agent_params["value"],
      batch,
      discount=su.ppo.discount,
      gae_lambda=su.ppo.gae_lambda,
    )

  adv, targets = advantages(state, batch)
  assert adv.shape == targets.shape == (STAGE.rollout_length, STAGE.num_envs)
  assert np.all(np.isfinite(adv)) and np.all(np.isfinite(targets))


def test_batch_rows_flattens_the_batch_into_the_buffer_schema(stage_setup):
  _, state, _, batch = stage_setup
  new_rows = mg.batch_rows(batch)
  assert jax.tree.structure(new_rows) == jax.tree.structure(
    jax.tree.map(lambda x: x[0], state.buffer.data)
  )
  t, n = STAGE.rollout_length, STAGE.num_envs
  assert new_rows["obs"].shape == new_rows["next_obs"].shape == (t * n, 4)
  assert new_rows["action"].shape == (t * n, 2)
  assert new_rows["reward"].shape == new_rows["termination"].shape == (t * n,)
  # Row i·N + j is step i of env j.
  np.testing.assert_array_equal(new_rows["next_obs"][3 * n + 5], batch.next_obs[3, 5])
  np.testing.assert_array_equal(new_rows["termination"], batch.termination.reshape(-1))


def test_fit_model_mle_lowers_nll_on_a_fixed_buffer(stage_setup):
  su, state, _, batch = stage_setup
  rows = mg.batch_rows(batch)
  stats = update_stats(state.obs_stats, batch.obs)
  state = state.replace(obs_stats=stats, buffer=buffer_add(state.buffer, rows))
  assert int(state.buffer.size) == 256  # the whole batch, the whole buffer

  @jax.jit
  def nll(params):
    return models.model_nll(
      su.model_net,
      stats,
      params,
      rows["obs"],
      rows["action"],
      rows["next_obs"],
      rows["reward"],
      STAGE.action_mode,
    )

  @jax.jit
  def fit(state, key):
    return models.fit_mle(
      state.model_params,
      state.model_opt,
      state.buffer,
      key,
      loss=su.nll(state.obs_stats),
      optimizer=su.model_optimizer,
      steps=su.fit.mle_steps,
      batch_size=su.fit.mle_batch,
    )

  before = float(nll(state.model_params))
  fitted_params, _, mean_loss = fit(state, jax.random.key(4))
  after = float(nll(fitted_params))
  assert su.fit.mle_steps == 300 and su.fit.mle_batch == 64
  assert np.isfinite(float(mean_loss))
  # Point-mass dynamics are deterministic and linear in (obs, action): 300 Adam steps take the
  # per-dimension NLL from ≈ 1.9 nats to ≈ −0.9.
  assert after < before - 1.0, (before, after)
  assert after < 0.0, (before, after)


def test_mg_start_batch_draws_only_the_latest_batch(stage_setup):
  """mg_start="batch" starts MG rollouts on the newest batch_steps rows (the states g_R is
  computed on); "buffer" draws from all real data."""
  su, state, _, _ = stage_setup
  steps = SMALL.batch_steps  # 32 rows per iteration; the stage buffer holds 256
  buf = state.buffer
  for i in range(3):  # three batches whose obs are their index: 0, 1, 2
    rows = {k: jnp.full((steps,) + v.shape[1:], float(i), v.dtype) for k, v in buf.data.items()}
    buf = buffer_add(buf, rows)
  key = jax.random.key(5)
  settings = dataclasses.replace(su.mg, mg_rollouts=256)
  start = lambda where: np.asarray(
    mg_model.mg_start_obs(dataclasses.replace(settings, mg_start=where), buf, key, steps)
  )
  recent, everything = start("batch"), start("buffer")
  assert recent.shape == everything.shape == (256,) + buf.data["obs"].shape[1:]
  np.testing.assert_array_equal(recent, 2.0)
  assert set(np.unique(everything)) == {0.0, 1.0, 2.0}


def test_average_real_grad_is_the_bias_corrected_running_mean(stage_setup):
  """real_grad_ema = β: the MG target after g_R^1, g_R^2 is (β g^1 + g^2) / (1 + β);
  β = 0 returns the latest g_R."""
  _, state, _, _ = stage_setup
  g = lambda v: jax.tree.map(lambda p: jnp.full_like(p, v), state.agent_params["policy"])
  for beta, expect in ((0.5, [1.0, (0.5 * 1.0 + 3.0) / 1.5]), (0.0, [1.0, 3.0])):
    avg, t = g(0.0), state.iteration
    for value, want in zip((1.0, 3.0), expect):
      t = t + 1
      avg, target = mg_model.average_real_grad(avg, g(value), jnp.float32(beta), t)
      for leaf in jax.tree.leaves(target):
        np.testing.assert_allclose(leaf, want, rtol=1e-6)


# --------------------------------------------------------------------- end to end, make_train
E2E_KEYS = (42, 43)


@pytest.fixture(scope="module")
def e2e_runs():
  """algo -> (final_state, metrics) of jax.jit(jax.vmap(make_train(config)))(2 keys)."""
  runs = {}
  keys = jnp.stack([jax.random.key(k) for k in E2E_KEYS])
  for algo in ("mg", "mle", "ppo"):
    train_fn = mgjax.make_train(Config(algo=algo, **E2E))
    runs[algo] = jax.block_until_ready(jax.jit(jax.vmap(train_fn))(keys))
  return runs


@pytest.fixture(scope="module")
def initial_returns():
  """Eval return of the untrained policy per seed, [seeds]. `mg.init` draws the policy
  parameters from the key alone, so the three algorithms start from this same policy."""
  su = mgjax.make_trainer(Config(algo="ppo", **E2E)).setup
  keys = jnp.stack([jax.random.key(k) for k in E2E_KEYS])
  fn = lambda k: mg.evaluate(su, mg.init(su, k), k)["eval_return"]
  return np.asarray(jax.jit(jax.vmap(fn))(keys))


@pytest.mark.slow
@pytest.mark.parametrize("algo", ["mg", "mle", "ppo"])
def test_make_train_vmapped_metric_shapes(e2e_runs, algo):
  final_state, metrics = e2e_runs[algo]
  config = Config(algo=algo, **E2E)
  seeds, chunks, every = E2E_SEEDS, run_schedule(config).num_chunks, config.eval_every
  assert chunks == 8
  per_iteration = {
    "train_return",
    "policy_loss",
    "value_loss",
    "entropy",
    "env_steps",
    "model_nll",
    "mle_loss",
    "mg_loss",
    "mg_grad_norm",
    "mg_grad_norm_clipped",
    "mg_nll_grad_norm",
    "mg_update_cos",
    "mg_update_ratio",
    "model_grad_cosine",
    "model_grad_cosine_heldout",
  }
  assert set(metrics["iterations"]) == per_iteration
  for name, x in metrics["iterations"].items():
    assert x.shape == (seeds, chunks, every), name
  for name in ("eval_return", "eval_length", "env_steps", "iteration"):
    assert metrics["eval"][name].shape == (seeds, chunks), name
  # 8 chunks × 5 iterations × 512 env steps = 20480 per seed.
  np.testing.assert_array_equal(metrics["eval"]["env_steps"][:, -1], [20480, 20480])
  np.testing.assert_array_equal(final_state.iteration, [40, 40])


@pytest.mark.slow
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


@pytest.mark.slow
def test_end_to_end_seeds_differ(e2e_runs):
  for algo, (final_state, metrics) in e2e_runs.items():
    leaves = jax.tree.leaves(final_state.agent_params)
    assert any(not np.array_equal(x[0], x[1]) for x in leaves), algo
    assert not np.array_equal(
      metrics["iterations"]["policy_loss"][0], metrics["iterations"]["policy_loss"][1]
    ), algo


@pytest.mark.slow
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
  for algo in ("mg", "mle"):  # out of sample, alike for both
    assert np.all(np.abs(it[algo]["model_grad_cosine_heldout"]) <= 1.0 + 1e-5), algo
  assert np.all(np.isnan(it["ppo"]["model_grad_cosine_heldout"]))
  # The MG term turns the model's step (shared optimiser: cos < 1), and only mg has one.
  assert np.all(np.abs(it["mg"]["mg_update_cos"]) <= 1.0 + 1e-5)
  assert np.mean(it["mg"]["mg_update_cos"]) < 0.9999
  assert np.all(np.isnan(it["mle"]["mg_update_cos"]))


def test_heldout_alignment_takes_g_r_and_start_states_from_disjoint_halves(
  stage_setup, monkeypatch
):
  """g_R from the first half of the batch's envs, ĝ_M's start states only from the second, the
  model as it was before the fit; raising either half's data changes only its side."""
  su, state, _, batch = stage_setup
  stats = update_stats(state.obs_stats, batch.obs)
  state = state.replace(obs_stats=stats)
  adv, _ = mg.real_advantages(
    su.nets.make_value_fn(stats),
    state.agent_params["value"],
    batch,
    discount=su.ppo.discount,
    gae_lambda=su.ppo.gae_lambda,
  )
  seen = {}

  def spy(su_, state_, params, start, key, real_grad):
    seen.update(start=np.asarray(start), real_grad=real_grad, params=params)
    return mg_model.mg_loss_from(su_, state_, params, start, key, real_grad)

  monkeypatch.setattr(mg, "mg_loss_from", spy)
  key = jax.random.key(6)
  half = su.train_env.num_envs // 2
  marked = batch._replace(obs=batch.obs.at[:, half:, 0].set(1e3))
  cos = float(mg.heldout_alignment(su, state, marked, adv, key))
  assert -1.0 <= cos <= 1.0
  assert np.all(seen["start"][:, 0] == 1e3)  # every start state from the second half
  assert leaves_equal(seen["params"], state.model_params)
  first = seen["real_grad"]
  # A different second half leaves g_R as it was; a different first half changes it.
  mg.heldout_alignment(su, state, marked, adv.at[:, half:].mul(-1.0), key)
  assert leaves_equal(seen["real_grad"], first)
  mg.heldout_alignment(su, state, marked, adv.at[:, :half].mul(-1.0), key)
  assert not leaves_equal(seen["real_grad"], first)


def test_real_critic_fits_the_batch_returns_and_is_psi_without_steps(stage_setup):
  su, state, _, batch = stage_setup
  stats = update_stats(state.obs_stats, batch.obs)
  value_fn = su.nets.make_value_fn(stats)
  psi = state.agent_params["value"]
  kw = dict(discount=su.ppo.discount, gae_lambda=su.ppo.gae_lambda)
  _, targets = mg.real_advantages(value_fn, psi, batch, **kw)

  def loss(params):
    v = jax.vmap(jax.vmap(value_fn, in_axes=(None, 0)), in_axes=(None, 0))(params, batch.obs)
    return float(0.5 * jnp.mean(jnp.square(v - targets)))

  fit = jax.jit(lambda p, b: mg.real_critic(value_fn, p, b, steps=200, learning_rate=1e-2, **kw))
  assert mg.real_critic(value_fn, psi, batch, steps=0, learning_rate=1e-3, **kw) is psi
  fitted = fit(psi, batch)
  assert loss(fitted) < 0.5 * loss(psi), (loss(psi), loss(fitted))
