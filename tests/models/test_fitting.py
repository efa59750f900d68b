"""Model objectives and the fit step (`mgjax.models.fitting`): the MG objective's shared and
separate optimiser, by hand on losses with known gradients, the metrics of how far the MG
term moves the model, and an objective written outside the package."""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import struct

from mgjax.algorithms.mg_model import fit_state, state_objective
from mgjax.models import fitting
from mgjax.models.fitting import MG_FIT_METRICS
from mgjax.optim import adam

A = jnp.array([30.0, -40.0, 0.0])  # g_mg = A: |g_mg| = 50
C = jnp.array([1.0, 2.0, -2.0])  # g_nll = φ − C


@struct.dataclass
class State:
  model_params: Any
  model_opt: Any
  hparams: dict
  mg_opt: Any = None


def mg_loss(phi, key):
  del key
  return jnp.vdot(A, phi), {}


def nll_loss(phi, key):
  del key
  return 0.5 * jnp.sum(jnp.square(phi - C))


OPT = adam(1e-2)


def _state(separate, mle_weight=1.0, max_norm=10.0):
  phi = jnp.zeros(3)
  return State(
    phi,
    OPT.init(phi),
    {"mle_weight": jnp.float32(mle_weight), "mg_max_grad_norm": jnp.float32(max_norm)},
    OPT.init(phi) if separate else None,
  )


def _fit(state, weight, steps=1):
  """`steps` steps of the MG objective of an algorithm's state (`mg_model.fit_state`)."""

  def run(s):
    objective = state_objective(s, mg_loss=mg_loss, nll_loss=nll_loss, optimizer=OPT, weight=weight)
    return fit_state(s, objective, jax.random.key(0), steps)

  return jax.jit(run)(state)


def _cos(a, b):
  return float(jnp.vdot(a, b) / (jnp.linalg.norm(a) * jnp.linalg.norm(b)))


@pytest.mark.parametrize("separate", [False, True])
def test_one_step_by_hand(separate):
  w, lam = 0.5, 2.0
  state = _state(separate, mle_weight=lam)
  after, metrics = _fit(state, w)
  assert set(metrics) == set(MG_FIT_METRICS)
  g_nll = lam * (state.model_params - C)
  g_mg = A * (10.0 / 50.0)  # clipped to norm 10
  without, _ = OPT.update(g_nll, state.model_opt)
  if separate:  # Δ = Adam(λ g_nll) + w · Adam'(clip(g_mg)), each with its own moments
    mg_step, _ = OPT.update(g_mg, state.mg_opt)
    step = without + w * mg_step
  else:  # one Adam step on w · clip(g_mg) + λ g_nll
    step, _ = OPT.update(w * g_mg + g_nll, state.model_opt)
  np.testing.assert_allclose(after.model_params, state.model_params + step, rtol=1e-6)
  np.testing.assert_allclose(metrics["mg_grad_norm"], 50.0, rtol=1e-6)
  np.testing.assert_allclose(metrics["mg_grad_norm_clipped"], 10.0, rtol=1e-6)
  np.testing.assert_allclose(metrics["mg_nll_grad_norm"], 3.0, rtol=1e-6)  # |φ − C| = 3
  np.testing.assert_allclose(metrics["mg_update_cos"], _cos(step, without), rtol=1e-5)
  np.testing.assert_allclose(
    metrics["mg_update_ratio"], jnp.linalg.norm(step) / jnp.linalg.norm(without), rtol=1e-5
  )
  assert float(metrics["mg_update_cos"]) < 0.99  # the MG term turns the step


def test_separate_moments_advance_apart_and_zero_weight_is_the_nll_step():
  state = _state(True)
  after, metrics = _fit(state, 0.0, steps=3)
  nll_only, _ = _fit(_state(True, max_norm=10.0).replace(mg_opt=None), 0.0, steps=3)
  np.testing.assert_allclose(after.model_params, nll_only.model_params, rtol=1e-6)
  np.testing.assert_allclose(metrics["mg_update_cos"], 1.0, rtol=1e-6)
  np.testing.assert_allclose(metrics["mg_update_ratio"], 1.0, rtol=1e-6)
  # The MG state saw only clipped g_mg: its first moment is the mean of three of them.
  mu_mg = after.mg_opt.inner_state[0].mu
  mu_nll = after.model_opt.inner_state[0].mu
  expected_mu = (1 - 0.9**3) * A * 0.2
  np.testing.assert_allclose(mu_mg, expected_mu, rtol=1e-5)
  assert not np.allclose(mu_nll, mu_mg)


def test_no_clip_and_no_steps():
  _, metrics = _fit(_state(False, max_norm=0.0), 1.0)
  np.testing.assert_allclose(metrics["mg_grad_norm_clipped"], 50.0, rtol=1e-6)
  _, metrics = _fit(_state(False), 1.0, steps=0)
  assert all(np.isnan(v) for v in metrics.values())


def test_shared_step_is_the_clipped_sum_through_one_optimiser():
  """The default reproduces the earlier update: apply_gradients on scale·g_mg + λ g_nll."""
  state = _state(False)
  after, _ = _fit(state, 1.0)
  expected = optax.apply_updates(
    state.model_params, OPT.update(0.2 * A + (state.model_params - C), state.model_opt)[0]
  )
  np.testing.assert_array_equal(after.model_params, expected)


def test_nll_objective_is_fit_mle():
  """fit_mle is `fit` of an nll_objective: the same steps, the mean loss before each."""
  phi = jnp.zeros(3)
  loss = lambda p, k: nll_loss(p, k) + 0.0 * jax.random.normal(k)
  params, opt, metrics = fitting.fit(
    fitting.nll_objective(loss, OPT), phi, OPT.init(phi), jax.random.key(1), 4
  )
  p, o, losses = phi, OPT.init(phi), []
  for _ in range(4):
    losses.append(nll_loss(p, None))
    u, o = OPT.update(p - C, o, p)
    p = optax.apply_updates(p, u)
  np.testing.assert_allclose(params, p, rtol=1e-6)
  np.testing.assert_allclose(metrics["nll"], np.mean(losses), rtol=1e-6)


def test_an_objective_written_outside_the_package_fits():
  """A ModelObjective of one's own (plain gradient descent on a quadratic, lr η) in the fit
  step: φ_n = C + (1 − η)^n (φ_0 − C), and its metrics are means over the steps."""
  eta = 0.25

  def update(params, state, key):
    del key
    grad = params - C  # ∇ ½|φ − C|²
    return -eta * grad, state + 1, {"distance": jnp.linalg.norm(params - C)}

  objective = fitting.ModelObjective(init=lambda params: jnp.int32(0), update=update)
  phi0 = jnp.zeros(3)
  params, count, metrics = jax.jit(
    lambda p: fitting.fit(objective, p, objective.init(p), jax.random.key(0), 3)
  )(phi0)
  np.testing.assert_allclose(params, C + (1 - eta) ** 3 * (phi0 - C), rtol=1e-6)
  assert int(count) == 3
  distances = [float(jnp.linalg.norm(C)) * (1 - eta) ** n for n in range(3)]
  np.testing.assert_allclose(metrics["distance"], np.mean(distances), rtol=1e-6)


@pytest.mark.slow
def test_a_model_objective_of_ones_own_joins_the_mg_loop(monkeypatch):
  """`Setup.objective` is where mg's loop gets the objective of its model steps: a variant
  (`derive`) replaces it from outside the package, and its metric is a column of its own."""
  import dataclasses

  from mgjax import algorithms
  from mgjax.algorithms import mg
  from mgjax.buffer import buffer_sample

  def gradient_descent_nll(su, state, real_grad):
    """Plain gradient descent (η = 1e-3) on the NLL of buffer minibatches; g_R unused."""
    del real_grad
    nll = su.nll(state.obs_stats)

    def update(params, opt_state, key):
      loss = lambda p: nll(p, buffer_sample(state.buffer, key, su.fit.mle_batch))
      value, grads = jax.value_and_grad(loss)(params)
      return jax.tree.map(lambda g: -1e-3 * g, grads), opt_state, {"gd_nll": value}

    return fitting.ModelObjective(init=lambda params: None, update=update)

  variant = algorithms.derive(
    mg.MG,
    "gd-mg",
    setup=lambda c, info: dataclasses.replace(mg.MG.setup(c, info), objective=gradient_descent_nll),
    metrics=("gd_nll",),
  )
  monkeypatch.setitem(algorithms.REGISTRY, "gd-mg", variant)
  small = dict(env="pointmass", num_envs=4, rollout_length=8, eval_every=2, total_steps=128)
  small.update(model_rollouts=8, model_horizon=2, num_minibatches=2, num_eval_envs=2)
  config = algorithms.make_config(algo="gd-mg", mle_steps=1, mg_steps=3, **small)
  assert "gd_nll" in algorithms.metric_columns(["gd-mg"])
  _, metrics = jax.jit(algorithms.make_train(config))(jax.random.key(0))
  its = metrics["iterations"]
  assert its["gd_nll"].shape == (2, 2) and np.all(np.isfinite(its["gd_nll"]))
  assert np.all(np.isnan(its["mg_update_cos"]))  # mg's own objective did not run
  assert np.all(np.isfinite(its["model_grad_cosine"]))  # the rest of mg's loop did


@pytest.mark.slow
def test_mg_steps_in_the_loop_raise_the_alignment_with_their_target():
  """mg's model stage (`mg_model.fit_model_mg`) at full strength (20 pathwise steps, no
  clip, λ = 0), from an NLL-fitted model on pointmass: on three fixed seeds, cos(ĝ_M, g_R) on
  fresh rollouts (`model_alignment`, one fixed key) rises by more than 0.2 over the start
  model's and over as many NLL-only steps'. (The score estimator's gain in 20 steps is
  within its rollout noise here.) g_R is the batch's own, the target the steps were fitted
  on: whether the gain carries to a held-out batch's g_R is what results/alignment-disjoint
  measures, and the loop does not guarantee it."""
  import dataclasses

  from mgjax import algorithms
  from mgjax.algorithms import mg, mg_model
  from mgjax.buffer import buffer_add
  from mgjax.nets.normalization import update_stats

  small = dict(env="pointmass", num_envs=8, rollout_length=32, episode_length=10)
  small.update(total_steps=2560, eval_every=1, buffer_size=512, mle_batch=64, model_hidden=(32, 32))
  config = algorithms.make_config(
    algo="mg",
    mle_steps=100,
    mg_steps=20,
    mg_max_grad_norm=0.0,
    mle_weight=0.0,
    estimator="pathwise",
    **small,
  )
  su = algorithms.make_trainer(config).setup

  @jax.jit
  def measure(key):
    state = mg.init(su, key)
    policy = su.nets.make_policy(state.obs_stats)
    _, batch = mg.collect(
      su.train_env,
      policy,
      state.agent_params["policy"],
      state.env_state,
      jax.random.fold_in(key, 1),
      rollout_length=su.run.rollout_length,
      action_mode=su.ppo.action_mode,
    )
    stats = update_stats(state.obs_stats, batch.obs)
    state = state.replace(obs_stats=stats, buffer=buffer_add(state.buffer, mg.batch_rows(batch)))
    params, opt, _ = mg.nll_steps(su, state, jax.random.fold_in(key, 2))
    state = state.replace(model_params=params, model_opt=opt)
    value_fn = su.nets.make_value_fn(stats)
    adv, _ = mg.real_advantages(
      value_fn,
      state.agent_params["value"],
      batch,
      discount=su.ppo.discount,
      gae_lambda=su.ppo.gae_lambda,
    )
    policy = su.nets.make_policy(stats)
    g_r = mg.real_policy_gradient(policy, state.agent_params["policy"], batch, adv, "raw")
    fit_key, eval_key = jax.random.fold_in(key, 3), jax.random.fold_in(key, 4)
    fitted, _ = mg_model.fit_model_mg(su, state, fit_key, g_r)
    nll_only, _, _ = mg.nll_steps(
      dataclasses.replace(su, fit=dataclasses.replace(su.fit, mle_steps=20)), state, fit_key
    )
    align = lambda p: mg_model.model_alignment(su, state.replace(model_params=p), eval_key, g_r)
    return align(state.model_params), align(fitted.model_params), align(nll_only)

  for seed in range(3):
    before, after_mg, after_nll = map(float, measure(jax.random.key(seed)))
    assert after_mg > before + 0.2 and after_mg > after_nll + 0.2, (seed, before, after_mg)
