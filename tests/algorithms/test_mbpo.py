"""Tests for mgjax.algorithms.mbpo (mbpo and mg-sac in the framework) and their presets.

One vmapped end-to-end run per algorithm on the fast point-mass env is shared by the module
(compiling it takes ~20 s on a 2-core CPU); the stages are checked alone on a small explored
state. The ensemble fit's pure pieces are in test_ensemble.py, the buffer's in test_buffer.py.
"""

import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from chunked import MBPO_SMALL, MG_SAC_STAGE, run_chunks, sac_target

import mgjax
from mgjax import envs, models
from mgjax.algorithms import get_algorithm, make_config, mbpo, preset, run_schedule
from mgjax.buffer import buffer_add_masked
from mgjax.config import Config, ConfigError, MBPOConfig
from mgjax.optim import set_learning_rate

_SMALL = MBPO_SMALL
_E2E_STEPS = 5000  # 500 random + 9 chunks of 10 iterations x 50 steps
_SEEDS = 2
_Z = 4.0  # standard errors
_MG = MG_SAC_STAGE


# ------------------------------------------------------------------------- pure pieces
@pytest.mark.parametrize(
  "epoch, expected",
  [
    # hopper: 1 -> 15 over epochs 20 -> 100; epoch 60: 1 + 0.5 * 14 = 8; floor of 1 + 14·41/80
    # = 8.175 at 61.
    (0, 1),
    (20, 1),
    (21, 1),
    (60, 8),
    (61, 8),
    (99, 14),
    (100, 15),
    (250, 15),
  ],
)
def test_branch_length_schedule(epoch, expected):
  assert int(jax.jit(mbpo.branch_length, static_argnums=1)(epoch, (20, 100, 1, 15))) == expected


# ------------------------------------------------------------------------- presets
def test_mbpo_presets_follow_the_published_settings():
  c = make_config(algo="mbpo", env="hopper")
  assert (c.num_envs, c.rollout_length, c.ensemble_size, c.elites) == (1, 250, 7, 5)
  assert c.model_hidden == (200, 200, 200, 200) and c.sac_hidden == (256, 256)
  assert (c.updates_per_step, c.real_ratio, c.target_entropy) == (20, 0.05, -1.0)
  assert c.branch_schedule == (20, 100, 1, 15) and c.rollout_batch == 100_000
  assert make_config(algo="mbpo", env="halfcheetah").updates_per_step == 40
  assert make_config(algo="mbpo", env="ant").branch_schedule == (20, 100, 1, 25)
  assert preset("mbpo", "ant")["branch_schedule"] == MBPOConfig.for_env("ant").branch_schedule
  # Explicit fields win over the preset; other algorithms have none.
  assert make_config(algo="mbpo", env="hopper", rollout_batch=1000).rollout_batch == 1000
  assert preset("mg", "hopper") == {} and make_config(algo="mg") == Config(algo="mg")
  # 5000 random steps, then (100000 - 5000) / (250 · 4) = 95 chunks.
  schedule = run_schedule(c)
  assert schedule.num_chunks == 95 and schedule.env_steps == 100_000


def test_mg_sac_takes_mbpo_presets_and_the_pathwise_estimator():
  c = make_config(algo="mg-sac", env="hopper")
  mbpo_config = make_config(algo="mbpo", env="hopper")
  assert dataclasses.replace(c, algo="mbpo", estimator=mbpo_config.estimator) == mbpo_config
  # mg-sac is MBPO's loop (random exploration first, SAC on real and model data), not PPO
  # in a model as mg and mle are.
  assert c.estimator == "pathwise" and run_schedule(c).initial_steps == c.exploration_steps
  assert get_algorithm("mg-sac").iteration is mbpo.iteration
  assert get_algorithm("mg").iteration is not mbpo.iteration
  assert make_config(algo="mg-sac", estimator="score").estimator == "score"
  with pytest.raises(ConfigError, match="mg_rollouts=1"):
    make_config(algo="mg-sac", env="hopper", estimator="score", mg_rollouts=1)


@pytest.mark.parametrize(
  "changes, field",
  [
    ({"elites": 8}, "elites=8"),
    ({"branch_schedule": (20, 10, 1, 15)}, "branch_schedule="),
    ({"branch_schedule": (1, 2, 3)}, "branch_schedule="),
    ({"real_ratio": 1.5}, "real_ratio="),
    ({"rollout_schedule": (1, 2, 3)}, "branch_schedule="),  # the field's old name
    ({"tau": -0.1}, "tau="),
    ({"updates_per_step": 0}, "updates_per_step=0"),
    ({"total_steps": 900}, "total_steps=900"),
    ({"bogus": 1}, "bogus"),
    ({"elite_draw": "member"}, "elite_draw='member'"),
    ({"elite_draw": "block", "rollout_batch": 255}, "rollout_batch=255: elite_draw='block'"),
    ({"real_grad_states": -1}, "real_grad_states=-1"),
    ({"real_grad_states": 50, **_MG}, "real_grad_states=50: fewer than mg_rollouts·mg_h"),
    ({"real_grad_ema": 0.9}, "real_grad_ema=0.9: is for mg and mle"),
  ],
)
def test_mbpo_config_errors_name_the_field(changes, field):
  with pytest.raises(ConfigError, match=field):
    make_config(**{**_SMALL, "total_steps": _E2E_STEPS, **changes})


# ------------------------------------------------------------------------- stages
def _setup(**changes):
  config = make_config(**{**_SMALL, "total_steps": _E2E_STEPS, **changes})
  return get_algorithm(config.algo).setup(config, envs.make_env(config.env))


@pytest.fixture(scope="module")
def explored():
  su = _setup()
  return su, jax.jit(lambda k: mbpo.init(su, k))(jax.random.key(1))


def test_exploration_fills_the_real_buffer(explored):
  su, state = explored
  assert int(state.buffer.size) == 500 and int(state.env_steps) == 500
  actions = np.asarray(state.buffer.data["action"][:500])
  assert actions.min() >= -1 and actions.max() <= 1 and actions.std() > 0.5  # uniform: 0.577
  assert int(state.model_buffer.size) == 0
  assert su.model_buffer_capacity == 256 * 5 * 20 * 1  # batch · max length · rounds/epoch


def test_fit_model_improves_held_out_nll_and_picks_elites(explored):
  su, state = explored
  hold_idx = 5 * jnp.arange(100)  # every held-out slot of the 500 rows
  hold = jax.tree.map(lambda d: d[hold_idx], state.buffer.data)
  nll = jax.jit(
    lambda p: models.member_nll(
      su.model_net,
      state.obs_stats,
      p,
      hold["obs"],
      hold["action"],
      hold["next_obs"],
      hold["reward"],
      "clip",
    )
  )
  before = np.asarray(nll(state.model_params))
  fitted, metrics = jax.jit(lambda s, k: mbpo.fit_model(su, s, k))(state, jax.random.key(2))
  after = np.asarray(nll(fitted.model_params))
  assert np.all(after < before - 0.5), (before, after)  # every member fits the dynamics
  elites = np.asarray(fitted.elites)
  assert len(set(elites.tolist())) == 2
  # The elites are the members of lowest held-out NLL (up to the 5000-row resample).
  assert set(elites.tolist()) == set(np.argsort(after)[:2].tolist()), (after, elites)
  assert 1 <= int(metrics["model_epochs"]) <= 5
  assert abs(float(metrics["model_nll"]) - after[elites].mean()) < 0.2


def test_fit_model_stops_early_without_improvement(explored):
  su, state = explored
  # A learning rate of 0 never improves: patience 2 stops after 2 epochs, params unchanged.
  su0 = dataclasses.replace(su, fit=su.fit._replace(patience=2))
  state = state.replace(model_opt=set_learning_rate(state.model_opt, 0.0))
  fitted, metrics = jax.jit(lambda s, k: mbpo.fit_model(su0, s, k))(state, jax.random.key(3))
  assert int(metrics["model_epochs"]) == 2
  chex.assert_trees_all_close(fitted.model_params, state.model_params)


def test_branched_rollouts_add_length_steps_and_stop_at_termination(explored):
  su, state = explored
  run = jax.jit(lambda s, k, n: mbpo.branched_rollouts(su, s, k, n))
  out = run(state, jax.random.key(4), jnp.int32(3))
  # Point-mass rollouts of 3 steps from 256 states: at most 768 rows, fewer where a rollout
  # left the arena (predicted termination) before its last step.
  assert 256 <= int(out.model_buffer.size) <= 768
  # With an env that always terminates, only each rollout's first step is kept.
  info = dataclasses.replace(su.env, termination_fn=lambda obs: jnp.float32(1.0))
  su_t = dataclasses.replace(su, env=info)
  out = jax.jit(lambda s, k: mbpo.branched_rollouts(su_t, s, k, jnp.int32(3)))(
    state, jax.random.key(4)
  )
  assert int(out.model_buffer.size) == 256
  assert np.all(np.asarray(out.model_buffer.data["termination"][:256]) == 1.0)


@pytest.mark.parametrize("draw", ["row", "block"])
def test_branched_rollouts_step_only_the_elites(explored, draw):
  su, state = explored
  # No rollout ends early: each of the 2 steps adds all 256 rows, in that order.
  info = dataclasses.replace(su.env, termination_fn=lambda obs: jnp.float32(0.0))
  su = dataclasses.replace(su, env=info, mbpo=dataclasses.replace(su.mbpo, elite_draw=draw))
  out_size = 2 * (su.env.obs_size + 1)

  # A 3-member ensemble whose member e predicts reward 100·e (zero kernels, so the output
  # is the last bias) with negligible noise; elites 2 and 0.
  def constant(path, x):
    name = jax.tree_util.keystr(path)
    if "log_std" in name:
      return jnp.full_like(x, -12.0)
    if "bias" in name and x.shape[-1] == out_size:
      return x.at[:].set(0.0).at[:, out_size // 2 - 1].set(100.0 * jnp.arange(3.0))
    return jnp.zeros_like(x)

  params = jax.tree_util.tree_map_with_path(constant, state.model_params)
  state = state.replace(model_params=params, elites=jnp.array([2, 0]))
  out = jax.jit(lambda s, k: mbpo.branched_rollouts(su, s, k, jnp.int32(2)))(
    state, jax.random.key(5)
  )
  assert int(out.model_buffer.size) == 512
  rewards = np.asarray(out.model_buffer.data["reward"][:512]).reshape(2, 256)
  np.testing.assert_allclose(np.unique(np.round(rewards, 3)), [0.0, 200.0])
  if draw == "row":  # the elites are drawn uniformly and independently (512 rows)
    assert 0.4 < np.mean(rewards > 100.0) < 0.6
  else:  # every step deals its 256 rows out in equal blocks: 128 to each elite
    np.testing.assert_array_equal(np.sum(rewards > 100.0, axis=1), [128, 128])


@pytest.mark.parametrize("draw", ["row", "block"])
def test_elite_step_predicts_each_row_with_one_elite(explored, draw):
  """Each row's next state is one elite's prediction for that row: under "block", elite
  n // (N/E) for row n, the same prediction as "row" computes for it from all elites."""
  from mgjax.nets.normalization import normalize, std

  su, state = explored
  # The members as trained at init, their noise made negligible (σ = e^−12).
  params = jax.tree_util.tree_map_with_path(
    lambda path, x: jnp.full_like(x, -12.0) if "log_std" in jax.tree_util.keystr(path) else x,
    state.model_params,
  )
  elite_params = jax.tree.map(lambda p: p[jnp.array([2, 0])], params)
  obs = state.buffer.data["obs"][:256]
  action = jax.random.uniform(jax.random.key(6), (256, su.env.action_size), minval=-1, maxval=1)
  model = su.model(state.obs_stats)
  next_obs, _, _ = jax.jit(lambda k: mbpo.elite_step(model, elite_params, obs, action, k, draw))(
    jax.random.key(7)
  )
  mean, _ = jax.vmap(su.model_net.apply, in_axes=(None, 0, 0))(
    elite_params, normalize(state.obs_stats, obs), action
  )
  # [256 rows, 2 elites, D] and [256, 2]
  predicted = np.asarray(obs[:, None] + std(state.obs_stats)[None, None] * mean[..., :-1])
  error = np.abs(np.asarray(next_obs)[:, None] - predicted).max(axis=-1)
  spread = np.abs(predicted[:, 0] - predicted[:, 1]).max(axis=-1)
  assert np.all(spread > 1e-2)  # the two elites' predictions tell them apart
  assert np.all(error.min(axis=1) < 1e-4)  # each row is one elite's prediction
  used = error.argmin(axis=1)
  if draw == "block":
    np.testing.assert_array_equal(used, np.repeat([0, 1], 128))
  else:
    assert 0.35 < used.mean() < 0.65


def test_sac_batch_mixes_real_and_model_rows(explored):
  su, state = explored
  # Mark the sources: real rewards +7, model rewards -7.
  real = state.buffer.replace(
    data={**state.buffer.data, "reward": jnp.full_like(state.buffer.data["reward"], 7.0)}
  )
  fake = buffer_add_masked(
    state.model_buffer, jax.tree.map(lambda d: d[:300], real.data), jnp.ones(300, bool)
  )
  fake = fake.replace(data={**fake.data, "reward": jnp.full_like(fake.data["reward"], -7.0)})
  batch = mbpo.sac_batch(
    real,
    fake,
    jax.random.key(5),
    jnp.int32(300),
    batch_size=su.sac.sac_batch,
    real_ratio=su.mbpo.real_ratio,
  )
  rewards = np.asarray(batch.reward)
  assert rewards.shape == (128,) and np.sum(rewards == 7.0) == int(128 * 0.05) == 6
  assert np.sum(rewards == -7.0) == 122 and np.all(np.asarray(batch.truncation) == 0)


# ------------------------------------------------------------------------- end to end
# One run of mg-sac: every stage of mbpo's loop (model fitting, branched rollouts, SAC on
# mixed real and model rows) and its MG steps. mbpo's own runs are the regression test's
# (test_regression.py) and the earlier version's resume point (test_compat.py).
@pytest.fixture(scope="module")
def e2e_mg_sac():
  config = make_config(**{**_SMALL, "algo": "mg-sac"}, **_MG, total_steps=_E2E_STEPS)
  return run_chunks(config, _SEEDS)


@pytest.mark.slow
def test_mg_sac_improves_return_on_pointmass(e2e_mg_sac):
  trainer, state, metrics = e2e_mg_sac
  assert trainer.num_chunks == 9 and np.asarray(state.env_steps).tolist() == [5000] * _SEEDS
  returns = metrics["eval"]["eval_return"]  # [seeds, chunks]
  assert np.all(np.isfinite(returns))
  # The untrained actor drifts out of the arena (return ≈ 15–35, see test_mg); a
  # stabilising one collects ≈ 90–98 of at most 100.
  first, final = returns[:, 0].mean(), returns[:, -1].mean()
  assert final > 80.0, returns
  assert final > first + 30.0, returns


@pytest.mark.slow
def test_mg_sac_metrics_and_schedule(e2e_mg_sac):
  _, state, metrics = e2e_mg_sac
  it = metrics["iterations"]
  for name in (
    "critic_loss",
    "actor_loss",
    "alpha",
    "q_mean",
    "model_nll",
    "entropy",
    "mg_loss",
    "mg_grad_norm",
    "model_grad_cosine",
  ):
    assert np.all(np.isfinite(it[name])), name
  assert np.all(np.abs(it["model_grad_cosine"]) <= 1.0)
  assert np.all(it["mg_grad_norm"] > 0)
  # Schedule (0, 2, 1, 5): length 1 in epoch 0, 3 in epoch 1, 5 from epoch 2 on.
  lengths = it["branch_length"][0].reshape(-1)
  assert lengths[0] == 1 and lengths[-1] == 5 and np.all(np.diff(lengths) >= 0)
  assert np.all(it["alpha"][:, -1] < 1.0)  # the temperature adapts down from 1
  seeds_differ = [not np.array_equal(x[0], x[1]) for x in jax.tree.leaves(state.sac)]
  assert any(seeds_differ)


def test_only_mg_sac_reports_the_mg_stage():
  # The metrics of one chunk, traced without compiling: the alignment diagnostic is computed
  # for mbpo too; the MG stage's metrics are mg-sac's.
  def reported(algo):
    trainer = mgjax.make_trainer(make_config(**{**_SMALL, "algo": algo}, total_steps=_E2E_STEPS))
    state = jax.eval_shape(trainer.init, jax.random.key(0))
    return set(jax.eval_shape(trainer.chunk, state)[1]["iterations"])

  mbpo_metrics, mg_sac_metrics = reported("mbpo"), reported("mg-sac")
  assert "model_grad_cosine" in mbpo_metrics and "branch_length" in mbpo_metrics
  assert not {m for m in mbpo_metrics if m.startswith("mg_")}
  assert (
    {"mg_loss", "mg_grad_norm"}
    <= mg_sac_metrics
    == mbpo_metrics | {m for m in mg_sac_metrics if m.startswith("mg_")}
  )


def test_real_grad_states_is_for_the_sac_loop():
  with pytest.raises(ConfigError, match="real_grad_states=512: is for mbpo and mg-sac"):
    make_config(algo="mg", env="pointmass", real_grad_states=512)


@pytest.mark.parametrize("real_grad_states", [0, 640])
def test_mg_stage_steps_along_the_mg_gradient(real_grad_states):
  """One MG step (mle_weight = 0, fresh Adam) moves every ensemble parameter by
  −lr · sign(∂L_MG/∂φ), L_MG = `mg_loss` on the step's own key: Adam's first step is
  −lr · g/(|g| + ε). A flipped sign, a wrong key or the NLL leaking in would fail.
  With real_grad_states = M the target is SAC's actor-loss gradient on M buffer states drawn
  with the keys split(fold_in(key, mg_steps)), built here from its formula.

  (Whether MG steps raise the *expected* alignment is an empirical question: from the
  trained point-mass state of the end-to-end test, 20 steps changed cos(ĝ_M, g_R) by +0.006
  (standard error 0.017) over 256 evaluation keys, i.e. not measurably; cos on one fixed
  draw is not smooth in φ, since a predicted termination can flip, so it is no test
  either.)"""
  su = _setup(algo="mg-sac", **{**_MG, "mg_steps": 1}, real_grad_states=real_grad_states)
  state = jax.jit(lambda k: mbpo.fit_model(su, mbpo.init(su, k), jax.random.key(2))[0])(
    jax.random.key(1)
  )
  lr = 1e-3
  fresh = set_learning_rate(su.model_optimizer.init(state.model_params), lr)
  state = state.replace(model_opt=fresh, hparams={**state.hparams, "mle_weight": jnp.float32(0.0)})
  key = jax.random.key(8)
  after, _ = jax.jit(lambda s: mbpo.fit_model_mg(su, s, key))(state)
  # fit_model_mg's keys: step k of split(key, steps), then (mkey, bkey) = split(k).
  mkey = jax.random.split(jax.random.split(key, 1)[0])[0]
  target = None
  if real_grad_states:
    skey, gkey = jax.random.split(jax.random.fold_in(key, 1))
    target = sac_target(su, state, state.buffer, skey, gkey, real_grad_states)
    _, metrics = mbpo.mg_loss(su, state, state.model_params, mkey, target)
    assert metrics["real_grad"] is target
  grad = jax.jit(jax.grad(lambda p: mbpo.mg_loss(su, state, p, mkey, target)[0]))(
    state.model_params
  )
  moved = jax.tree.map(
    lambda a, b: np.asarray(a) - np.asarray(b), after.model_params, state.model_params
  )
  checked = 0
  for d, g in zip(jax.tree.leaves(moved), jax.tree.leaves(grad)):
    g = np.asarray(g)
    big = np.abs(g) > 1e-4  # there g/(|g| + 1e-8) is sign(g) to 1e-4
    np.testing.assert_allclose(d[big], -lr * np.sign(g[big]), rtol=2e-3, atol=1e-7)
    checked += int(big.sum())
  assert checked > 1000
