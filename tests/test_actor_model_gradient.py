"""Exact-gradient checks of the off-policy model-gradient objective (`actor_gradient`,
`actor_model_gradient_loss`; docs/design.md, "The MG objective", applied to mg-sac).

The problem: a scalar linear-Gaussian model s' = αs + βa + σε, a Gaussian policy
a = ks + σ_π ξ, and a per-state actor loss with the shape of SAC's
    ℓ(θ, s, ξ) = ½ (a − q s − c)² + α_e log π(a|s),   a = ks + σ_π ξ (reparameterised).
E_ξ ℓ is quadratic in s, so the expected actor gradient on the model's states needs only
their first two moments, which propagate in closed form:
    E ℓ = ½ (k − q)² v − c (k − q) m + ½ c² + ½ σ_π² − α_e (log σ_π + ½ + ½ log 2π),
    m_{t+1} = (α + βk) m_t,   v_{t+1} = (α + βk)² v_t + β² σ_π² + σ².
ĝ_M(φ) = ∇_θ' (1/H) Σ_{t=1..H} E ℓ(θ'; m_t, v_t) with the moments taken at the current θ
(the states are data for the θ-derivative). The exact ∇_φ S(ĝ_M(φ), g_R) is autodiff of that.
Tolerances are derived from the standard errors of the same samples.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gradcheck import (
  assert_mean_close,
  gaussian_log_prob,
  linear_gaussian_policy,
  linear_model_params,
)
from gradcheck import cos as _cos
from gradcheck import flat as _flat
from gradcheck import similarity as _similarity
from jax.flatten_util import ravel_pytree

import mgjax

_HORIZON = 3
_NUM_ROLLOUTS = 8192
_NUM_KEYS = 64
# ℓ's constants. With c < 0 the two terms of ∂E ℓ/∂k nearly cancel on the model's states but
# not on the real system's: cos(g_M, g_R) ≈ 0.45, well away from ±1.
_Q, _C, _ALPHA_E = 0.5, -1.0, 0.05


def _model(threshold=None):
  """s' = α s + β a + σ ε, φ = {"alpha", "beta", "log_sigma"}; reward 0; done when
  s' > threshold (never by default)."""

  def sample(phi, obs, action, key):
    next_obs = (
      phi["alpha"] * obs
      + phi["beta"] * action
      + jnp.exp(phi["log_sigma"]) * jax.random.normal(key, obs.shape)
    )
    done = jnp.zeros(()) if threshold is None else (next_obs[0] > threshold).astype(jnp.float32)
    return next_obs, jnp.zeros(()), done

  def log_prob(phi, obs, action, next_obs, reward):
    del reward
    return gaussian_log_prob(
      next_obs, phi["alpha"] * obs + phi["beta"] * action, jnp.exp(phi["log_sigma"])
    )

  return mgjax.Model(sample=sample, log_prob=log_prob)


def _actor_loss(theta, obs, key):
  policy = linear_gaussian_policy()
  action = policy.sample(theta, obs, key)
  return 0.5 * jnp.sum((action - _Q * obs - _C) ** 2) + _ALPHA_E * policy.log_prob(
    theta, obs, action
  )


def _expected_actor_loss(theta, m, v):
  k, std = theta["k"], jnp.exp(theta["log_std"])
  return (
    0.5 * (k - _Q) ** 2 * v
    - _C * (k - _Q) * m
    + 0.5 * _C**2
    + 0.5 * std**2
    - _ALPHA_E * (jnp.log(std) + 0.5 + 0.5 * jnp.log(2 * jnp.pi))
  )


def _exact_actor_grad(theta, phi, m0, v0):
  """E[ĝ_M] = ∇_θ' (1/H) Σ_{t=1..H} E ℓ(θ'; m_t, v_t), moments at θ; flattened."""
  gain = phi["alpha"] + phi["beta"] * theta["k"]
  noise = phi["beta"] ** 2 * jnp.exp(2 * theta["log_std"]) + jnp.exp(2 * phi["log_sigma"])

  def step(mv, _):
    m, v = gain * mv[0], gain**2 * mv[1] + noise
    return (m, v), (m, v)

  _, (ms, vs) = jax.lax.scan(step, (m0, v0), None, length=_HORIZON)
  grad = jax.grad(lambda t: jnp.mean(jax.vmap(_expected_actor_loss, (None, 0, 0))(t, ms, vs)))
  return ravel_pytree(grad(theta))[0]


@pytest.fixture(scope="module")
def problem():
  theta = {"k": jnp.array(-0.3), "log_std": jnp.log(jnp.array(0.5))}
  phi = linear_model_params(0.8, 0.5, 0.3)
  phi_real = linear_model_params(1.0, -0.5, 0.3)
  start_obs = 1.0 + jax.random.normal(jax.random.key(40), (_NUM_ROLLOUTS, 1))
  # The moments of s_t are linear in those of s_0: the empirical ones are exact.
  m0, v0 = jnp.mean(start_obs), jnp.mean(start_obs**2)
  exact_grad = functools.partial(_exact_actor_grad, m0=m0, v0=v0)
  real_grad = ravel_pytree(theta)[1](exact_grad(theta, phi_real))
  return dict(theta=theta, phi=phi, real_grad=real_grad, start_obs=start_obs, exact_grad=exact_grad)


def _loss_fn(problem, similarity, estimator, model=None):
  return functools.partial(
    mgjax.actor_model_gradient_loss,
    policy_params=problem["theta"],
    start_obs=problem["start_obs"],
    policy=linear_gaussian_policy(),
    model=model or _model(),
    actor_loss=_actor_loss,
    horizon=_HORIZON,
    similarity=similarity,
    estimator=estimator,
  )


def _exact_model_grad(problem, similarity):
  g_real = _flat(problem["real_grad"])
  grad = jax.grad(
    lambda phi: _similarity(problem["exact_grad"](problem["theta"], phi), g_real, similarity)
  )(problem["phi"])
  return _flat(grad)


def _samples(problem, similarity, estimator, keys):
  """Per key: −∇_φ loss, the loss, metrics["cosine"] and metrics["model_grad"] (flattened)."""
  loss_fn = _loss_fn(problem, similarity, estimator)

  @jax.jit
  def run(keys):
    def one(key):
      (loss, metrics), grad = jax.value_and_grad(
        lambda phi: loss_fn(phi, real_grad=problem["real_grad"], key=key), has_aux=True
      )(problem["phi"])
      return -_flat(grad), loss, metrics["cosine"], _flat(metrics["model_grad"])

    return jax.vmap(one)(keys)

  return run(keys)


def test_actor_gradient_by_hand():
  # ℓ(w, s) = ½ (w s − 1)²: ∇_w = mean_b (w s_b − 1) s_b.
  # w = 2, s = (1, −1, 3): (1·1 + (−3)(−1) + 5·3) / 3 = (1 + 3 + 15) / 3 = 19/3.
  loss = lambda w, s, key: 0.5 * jnp.sum((w * s - 1.0) ** 2)
  grad = jax.jit(functools.partial(mgjax.actor_gradient, actor_loss=loss))(
    jnp.array(2.0), obs=jnp.array([[1.0], [-1.0], [3.0]]), key=jax.random.key(0)
  )
  np.testing.assert_allclose(grad, 19.0 / 3.0, rtol=1e-6)


def test_actor_gradient_matches_closed_form(problem):
  # On states drawn from N(m, v − m²) the sampled gradient has mean ∇_θ E ℓ(θ; m, v).
  m, var = 0.7, 0.4
  obs = m + np.sqrt(var) * jax.random.normal(jax.random.key(41), (_NUM_KEYS, 4096, 1))
  keys = jax.random.split(jax.random.key(42), _NUM_KEYS)
  grads = jax.jit(
    jax.vmap(
      lambda o, k: _flat(
        mgjax.actor_gradient(problem["theta"], actor_loss=_actor_loss, obs=o, key=k)
      )
    )
  )(obs, keys)
  exact = _flat(jax.grad(_expected_actor_loss)(problem["theta"], m, var + m**2))
  _, se = assert_mean_close(grads, exact)
  assert se < 0.05 * jnp.linalg.norm(exact)


def test_problem_is_well_posed(problem):
  g_model = problem["exact_grad"](problem["theta"], problem["phi"])
  assert abs(_cos(g_model, _flat(problem["real_grad"]))) < 0.8
  assert jnp.linalg.norm(_exact_model_grad(problem, "cosine")) > 0.1


@pytest.mark.parametrize("estimator", ["score", "pathwise"])
def test_sampled_actor_gradient_loss_value_and_cosine_metric(problem, estimator):
  keys = jax.random.split(jax.random.key(43), _NUM_KEYS)
  _, loss, cosines, g_hat = _samples(problem, "inner", estimator, keys)
  g_real = _flat(problem["real_grad"])
  _, se = assert_mean_close(g_hat, problem["exact_grad"](problem["theta"], problem["phi"]))
  assert se < 0.05 * jnp.linalg.norm(g_hat.mean(0))  # the check has power
  np.testing.assert_allclose(loss, -(g_hat @ g_real), rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(
    cosines, jax.vmap(lambda g: _cos(g, g_real))(g_hat), rtol=1e-4, atol=1e-5
  )


@pytest.mark.parametrize("estimator", ["score", "pathwise"])
@pytest.mark.parametrize("similarity", ["inner", "cosine"])
def test_model_gradient_matches_exact(problem, similarity, estimator):
  keys = jax.random.split(jax.random.key(44), _NUM_KEYS)
  samples, *_ = _samples(problem, similarity, estimator, keys)
  exact = _exact_model_grad(problem, similarity)
  assert _cos(jnp.mean(samples, axis=0), exact) > 0.9
  if similarity == "inner":  # linear in ĝ_M, so the estimate is unbiased
    _, se = assert_mean_close(samples, exact)
    assert se < 0.1 * jnp.linalg.norm(exact)


@pytest.mark.parametrize("estimator", ["score", "pathwise"])
@pytest.mark.parametrize("similarity", ["cosine", "l2"])
def test_chain_rule(problem, similarity, estimator):
  """Same key, same rollouts: −∇_φ loss is −∇_φ of the "inner" loss at real_grad = u,
  u = ∂S/∂g at the sampled ĝ_M."""
  loss_fn = _loss_fn(problem, similarity, estimator)
  inner_fn = _loss_fn(problem, "inner", estimator)
  g_real, unravel = ravel_pytree(problem["real_grad"])

  @jax.jit
  def run(key):
    (loss, metrics), grad = jax.value_and_grad(
      lambda phi: loss_fn(phi, real_grad=problem["real_grad"], key=key), has_aux=True
    )(problem["phi"])
    g_hat = _flat(metrics["model_grad"])
    u = jax.grad(lambda g: _similarity(g, g_real, similarity))(g_hat)
    along_u = jax.grad(lambda phi: inner_fn(phi, real_grad=unravel(u), key=key)[0])(problem["phi"])
    return loss, g_hat, _flat(grad), _flat(along_u)

  for key in jax.random.split(jax.random.key(45), 3):
    loss, g_hat, grad, along_u = run(key)
    np.testing.assert_allclose(loss, -_similarity(g_hat, g_real, similarity), rtol=1e-5)
    np.testing.assert_allclose(grad, along_u, rtol=1e-4, atol=1e-6 * jnp.max(jnp.abs(along_u)))


def test_terminal_and_later_states_are_masked():
  """A deterministic model (σ = 0, σ_π ≈ 0) whose state doubles each step and terminates
  above 3: from s_0 = 1 the rollout visits 2, 4 (terminal), then would go on to 8. Only
  s_1 = 2 counts, and ĝ_M = ∇_θ ℓ(θ, 2) / H."""
  theta = {"k": jnp.array(0.0), "log_std": jnp.array(-30.0)}
  phi = linear_model_params(2.0, 0.0, 0.0)
  phi["log_sigma"] = jnp.array(-30.0)
  for estimator in ("pathwise", "score"):
    loss, metrics = jax.jit(
      functools.partial(
        mgjax.actor_model_gradient_loss,
        policy_params=theta,
        real_grad=theta,
        start_obs=jnp.ones((1, 1)),
        key=jax.random.key(0),
        policy=linear_gaussian_policy(),
        model=_model(threshold=3.0),
        actor_loss=_actor_loss,
        horizon=_HORIZON,
        similarity="inner",
        estimator=estimator,
        baseline=False,  # one rollout: the score estimator has no leave-one-out baseline
      )
    )(phi)
    expected = jax.tree.map(
      lambda g: g / _HORIZON, jax.grad(_actor_loss)(theta, jnp.array([2.0]), jax.random.key(1))
    )
    # ∂ℓ/∂k = (a − q s − c) s with a = 0: (0 − 1 + 1)·2 = 0; the α_e log π term gives
    # ∂/∂log σ = −α_e whatever the key. Both are key-free, so the comparison is exact.
    np.testing.assert_allclose(_flat(metrics["model_grad"]), _flat(expected), atol=1e-6)
    np.testing.assert_allclose(metrics["alive_fraction"], 1.0 / _HORIZON, rtol=1e-6)


def test_unknown_options_raise(problem):
  call = lambda **kw: _loss_fn(problem, **kw)(
    problem["phi"], real_grad=problem["real_grad"], key=jax.random.key(0)
  )
  with pytest.raises(ValueError, match="similarity='dot'"):
    call(similarity="dot", estimator="score")
  with pytest.raises(ValueError, match="estimator='reinforce'"):
    call(similarity="cosine", estimator="reinforce")
