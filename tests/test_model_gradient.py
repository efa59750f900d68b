"""Exact-gradient checks of the model-gradient objective (docs/design.md, "The MG objective").

Problems whose expected policy gradient has a closed form:

* a tabular MDP (one-hot observations, integer actions, softmax policy, softmax model): J_H by
  propagating the state distribution; also with GAE(γ, λ), a value function and termination;
* a scalar linear-Gaussian system (s' = αs + βa + σε, a = ks + σ_π ξ, r = −(q s² + ρ a²)): J_H by
  propagating E[s²].

With discount = λ = 1 and a zero value function the per-step advantage is the reward-to-go, so
E[ĝ_M] = ∇_θ J_H / H and the exact model gradient is ∇_φ S(∇_θ J_H(θ, φ) / H, g_R), obtained by
autodiff of the closed form. The Monte Carlo estimates are averaged over many keys and compared
against it; every tolerance is derived from the standard error measured from the same samples.

ĝ_M itself is recovered from the loss value: with similarity "inner" the loss is −⟨ĝ_M, g_R⟩, so
real_grad = e_i (same key, hence same rollouts) gives −ĝ_M[i]. That also pins the chain rule
exactly: for any S the estimate must equal the "inner" estimate along u = ∂S/∂g at that ĝ_M.
"""

import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gradcheck import Z as _Z
from gradcheck import assert_mean_close as _assert_mean_close
from gradcheck import cos as _cos
from gradcheck import flat as _flat
from gradcheck import gaussian_log_prob, linear_gaussian_policy, linear_model_params
from gradcheck import similarity as _similarity
from jax.flatten_util import ravel_pytree

import mgjax


def _zero_value(value_params, obs):
  del obs
  return value_params  # a zero scalar: with γ = λ = 1, Â_t is the reward-to-go


class Problem(NamedTuple):
  """A model-gradient problem with the exact mean of its sampled policy gradient."""

  policy: mgjax.Policy
  model: mgjax.Model
  policy_params: Any
  model_params: Any
  real_grad: Any
  start_obs: jax.Array
  horizon: int
  # exact_policy_grad(policy_params, model_params) -> E[ĝ_M], flattened.
  exact_policy_grad: Callable[[Any, Any], jax.Array]
  # exact_return(policy_params, model_params) -> J_H averaged over the rows of start_obs.
  exact_return: Callable[[Any, Any], jax.Array] | None = None
  value_fn: Callable[[Any, jax.Array], jax.Array] = _zero_value
  value_params: Any = 0.0
  discount: float = 1.0
  gae_lambda: float = 1.0


def _return_gradient(exact_return, horizon):
  """With γ = λ = 1 and V ≡ 0, E[ĝ_M] = ∇_θ J_H(θ, φ) / H."""
  return lambda theta, phi: _flat(jax.grad(exact_return)(theta, phi)) / horizon


def _exact_policy_grad(problem, model_params):
  """g_M(φ) = E[ĝ_M] at φ, flattened."""
  return problem.exact_policy_grad(problem.policy_params, model_params)


def _exact_model_grad(problem, similarity):
  """∇_φ S(g_M(φ), g_R), flattened."""
  g_real = _flat(problem.real_grad)
  grad = jax.grad(lambda phi: _similarity(_exact_policy_grad(problem, phi), g_real, similarity))(
    problem.model_params
  )
  return _flat(grad)


def _loss_fn(problem, similarity, estimator):
  return functools.partial(
    mgjax.model_gradient_loss,
    policy_params=problem.policy_params,
    value_params=jnp.asarray(problem.value_params),
    start_obs=problem.start_obs,
    policy=problem.policy,
    model=problem.model,
    value_fn=problem.value_fn,
    horizon=problem.horizon,
    discount=problem.discount,
    gae_lambda=problem.gae_lambda,
    similarity=similarity,
    estimator=estimator,
  )


def _sample_model_grads(problem, similarity, estimator, keys):
  """Per key: −∇_φ loss (flattened), the loss value and metrics["cosine"]."""
  loss_fn = _loss_fn(problem, similarity, estimator)

  @jax.jit
  def run(keys):
    def one(key):
      (loss, metrics), grad = jax.value_and_grad(
        lambda phi: loss_fn(phi, real_grad=problem.real_grad, key=key), has_aux=True
      )(problem.model_params)
      return -_flat(grad), loss, metrics["cosine"]

    return jax.vmap(one)(keys)

  return run(keys)


def _sample_policy_grads(problem, estimator, keys):
  """Per key: the sampled ĝ_M [K, dim θ], ⟨ĝ_M, g_R⟩ [K], metrics["cosine"] [K] and
  metrics["model_grad"] [K, dim θ].

  ĝ_M[i] is read off the "inner" loss at real_grad = e_i; one more call at real_grad = g_R
  gives ⟨ĝ_M, g_R⟩ and the logged cosine and ĝ_M for the same rollouts.
  """
  loss_fn = _loss_fn(problem, "inner", estimator)
  g_real, unravel = ravel_pytree(problem.real_grad)
  directions = jnp.concatenate([jnp.eye(g_real.shape[0], dtype=g_real.dtype), g_real[None]])

  @jax.jit
  def run(keys):
    def one(key, direction):
      loss, metrics = loss_fn(problem.model_params, real_grad=unravel(direction), key=key)
      return -loss, metrics["cosine"], _flat(metrics["model_grad"])

    inner, cosines, logged = jax.vmap(lambda key: jax.vmap(lambda d: one(key, d))(directions))(keys)
    return inner[:, :-1], inner[:, -1], cosines[:, -1], logged[:, -1]

  return run(keys)


def _check_policy_grads_and_cosine_metric(problem, policy_grads, inner, cosines, logged):
  """E[ĝ_M] = g_M, metrics["model_grad"] = ĝ_M and metrics["cosine"] = cos(ĝ_M, g_R) per
  sample, and ≈ cos(g_M, g_R) on average."""
  np.testing.assert_allclose(
    logged, policy_grads, rtol=1e-4, atol=1e-5 * jnp.max(jnp.abs(policy_grads))
  )
  g_model = _exact_policy_grad(problem, problem.model_params)
  g_real = _flat(problem.real_grad)
  _, se = _assert_mean_close(policy_grads, g_model)
  assert se < 0.05 * jnp.linalg.norm(g_model)  # the check has power
  # The "inner" loss is linear in real_grad.
  np.testing.assert_allclose(
    inner, policy_grads @ g_real, rtol=1e-4, atol=1e-5 * jnp.max(jnp.abs(inner))
  )
  np.testing.assert_allclose(
    cosines, jax.vmap(lambda g: _cos(g, g_real))(policy_grads), rtol=1e-4, atol=1e-5
  )
  # cos is nonlinear, so E[cos(ĝ_M, g_R)] = cos(g_M, g_R) + ½ tr(∇²cos · Cov ĝ_M) + O(N⁻²);
  # the second-order term is computed from the sampled ĝ_M and must stay below the noise, so
  # that the neglected higher orders are negligible.
  exact = _cos(g_model, g_real)
  hessian = jax.hessian(lambda g: _cos(g, g_real))(g_model)
  bias = 0.5 * jnp.sum(hessian * jnp.cov(policy_grads, rowvar=False))
  se = jnp.std(cosines, ddof=1) / np.sqrt(cosines.shape[0])
  assert abs(bias) < se, (float(bias), float(se))
  assert abs(jnp.mean(cosines) - exact - bias) <= _Z * se, (float(jnp.mean(cosines)), float(exact))


def _baseline_allowance(exact, num_rollouts):
  """A batch-mean baseline that includes the sample itself scales the mean by (1 − 1/N)."""
  return jnp.linalg.norm(exact) / num_rollouts


# ------------------------------------------------------------------------------------------
# Tabular MDP: 3 states, 2 actions, one-hot observations, integer actions.

_S, _A = 3, 2
_TAB_HORIZON = 4
_TAB_NUM_ROLLOUTS = 4096
_TAB_NUM_KEYS = 64
# Only the last state pays, so the policy gradient comes entirely from the dynamics and the
# model's and the real system's gradients can disagree.
_TAB_REWARD = jnp.array([[0.0, 0.0], [0.0, 0.0], [1.0, 1.0]])  # R[s, a]


def _tabular_policy():
  """π_θ(a|s) = softmax(θ[s])[a], θ [S, A]; obs is one-hot [S], action an integer."""
  return mgjax.Policy(
    sample=lambda theta, obs, key: jax.random.categorical(key, obs @ theta),
    log_prob=lambda theta, obs, action: jax.nn.log_softmax(obs @ theta)[action],
  )


def _tabular_model(terminal_state=None):
  """M_φ(s'|s, a) = softmax(φ[s, a])[s'], φ [S, A, S]; reward R[s, a] is known.

  done = 1 on entering `terminal_state` (never if None).
  """

  def logits(phi, obs, action):
    return obs @ phi[:, action, :]

  def sample(phi, obs, action, key):
    next_state = jax.random.categorical(key, logits(phi, obs, action))
    if terminal_state is None:
      done = jnp.zeros(())
    else:
      done = (next_state == terminal_state).astype(jnp.float32)
    return jax.nn.one_hot(next_state, _S), obs @ _TAB_REWARD[:, action], done

  def log_prob(phi, obs, action, next_obs, reward):
    del reward  # deterministic and independent of φ
    return next_obs @ jax.nn.log_softmax(logits(phi, obs, action))

  return mgjax.Model(sample=sample, log_prob=log_prob)


def tabular_return(theta, transition, start_dist, horizon):
  """J_H = Σ_{t<H} d_tᵀ r_π, d_{t+1} = d_tᵀ P_π, with P_π[s, s'] = Σ_a π(a|s) P[s, a, s']."""
  pi = jax.nn.softmax(theta, axis=-1)
  reward_pi = jnp.sum(pi * _TAB_REWARD, axis=-1)
  transition_pi = jnp.einsum("sa,san->sn", pi, transition)

  def step(dist, _):
    return dist @ transition_pi, dist @ reward_pi

  _, rewards = jax.lax.scan(step, start_dist, None, length=horizon)
  return jnp.sum(rewards)


@pytest.fixture(scope="module")
def tabular():
  theta_key, model_key, real_key = jax.random.split(jax.random.key(0), 3)
  theta = 0.5 * jax.random.normal(theta_key, (_S, _A))
  phi = 1.5 * jax.random.normal(model_key, (_S, _A, _S))
  phi_real = 1.5 * jax.random.normal(real_key, (_S, _A, _S))
  # Start states in fixed proportions 1/2, 1/4, 1/4: the empirical start distribution is exact.
  counts = (_TAB_NUM_ROLLOUTS // 2, _TAB_NUM_ROLLOUTS // 4, _TAB_NUM_ROLLOUTS // 4)
  start_obs = jax.nn.one_hot(
    jnp.repeat(jnp.arange(_S), jnp.array(counts), total_repeat_length=_TAB_NUM_ROLLOUTS), _S
  )
  start_dist = jnp.mean(start_obs, axis=0)

  def exact_return(theta, phi):
    return tabular_return(theta, jax.nn.softmax(phi, axis=-1), start_dist, _TAB_HORIZON)

  # g_R: the exact policy gradient under different "real" dynamics.
  real_grad = jax.grad(exact_return)(theta, phi_real) / _TAB_HORIZON
  return Problem(
    _tabular_policy(),
    _tabular_model(),
    theta,
    phi,
    real_grad,
    start_obs,
    _TAB_HORIZON,
    _return_gradient(exact_return, _TAB_HORIZON),
    exact_return,
  )


def test_tabular_exact_return_matches_brute_force_rollouts(tabular):
  # Guards the reference itself: J_H from plain Monte Carlo rollouts of the tabular system.
  num = 200_000
  transition = jax.nn.softmax(tabular.model_params, axis=-1)
  pi = jax.nn.softmax(tabular.policy_params, axis=-1)

  @jax.jit
  def returns(key):
    start_key, key = jax.random.split(key)
    states = jax.random.categorical(
      start_key, jnp.log(jnp.mean(tabular.start_obs, 0)), shape=(num,)
    )

    def step(states, key):
      action_key, next_key = jax.random.split(key)
      actions = jax.random.categorical(action_key, jnp.log(pi[states]))
      next_states = jax.random.categorical(next_key, jnp.log(transition[states, actions]))
      return next_states, _TAB_REWARD[states, actions]

    _, rewards = jax.lax.scan(step, states, jax.random.split(key, tabular.horizon))
    return jnp.sum(rewards, axis=0)

  samples = returns(jax.random.key(1))
  se = jnp.std(samples) / np.sqrt(num)
  exact = tabular.exact_return(tabular.policy_params, tabular.model_params)
  assert abs(jnp.mean(samples) - exact) <= _Z * se


def test_tabular_problem_is_well_posed(tabular):
  g_model = _exact_policy_grad(tabular, tabular.model_params)
  g_real = _flat(tabular.real_grad)
  # Near ±1 the cosine similarity's gradient vanishes and the check would be vacuous.
  assert abs(_cos(g_model, g_real)) < 0.8
  assert jnp.linalg.norm(_exact_model_grad(tabular, "cosine")) > 0.1


def test_tabular_sampled_policy_gradient_and_cosine_metric(tabular):
  keys = jax.random.split(jax.random.key(2), _TAB_NUM_KEYS)
  _check_policy_grads_and_cosine_metric(tabular, *_sample_policy_grads(tabular, "score", keys))


@pytest.mark.parametrize("similarity", ["inner", "cosine"])
def test_tabular_score_model_gradient_matches_exact(tabular, similarity):
  keys = jax.random.split(jax.random.key(3), _TAB_NUM_KEYS)
  samples, _, _ = _sample_model_grads(tabular, similarity, "score", keys)
  exact = _exact_model_grad(tabular, similarity)
  assert _cos(jnp.mean(samples, axis=0), exact) > 0.9
  if similarity == "inner":
    _, se = _assert_mean_close(
      samples, exact, extra_tol=_baseline_allowance(exact, _TAB_NUM_ROLLOUTS)
    )
    assert se < 0.1 * jnp.linalg.norm(exact)


# ------------------------------------------------------------------------------------------
# The same MDP with GAE(γ, λ), a non-zero value function and termination on entering state 0.

_GAE_HORIZON = 5
_GAE_DISCOUNT, _GAE_LAMBDA = 0.9, 0.8
_GAE_TERMINAL_STATE = 0
_GAE_VALUES = jnp.array([0.5, -0.3, 1.2])  # V(s)


def tabular_gae_policy_grad(theta, transition, start_dist, horizon):
  """E[ĝ_M] for GAE advantages with V = _GAE_VALUES and termination, flattened.

  Give step t its own copy θ_t of θ. For any X that depends only on step t and later,
  E[m_t ∇log π(a_t|s_t) X] = ∂/∂θ_t E[m_t X] (m_t: alive mask), and m_t Â_t =
  Σ_{k≥t} (γλ)^{k−t} m_k δ_k, hence

    E[ĝ_M] = (1/H) Σ_t ∂/∂θ_t Σ_{k≥t} (γλ)^{k−t} E[m_k δ_k],
    E[m_k δ_k] = d_kᵀ r_π + γ d_{k+1}ᵀ V − d_kᵀ V,

  with d_k the distribution of s_k restricted to live trajectories (d_{k+1} = d_kᵀ P_π with
  the terminal state's mass removed; V(s_H) is the bootstrap).
  """
  keep = 1.0 - jax.nn.one_hot(_GAE_TERMINAL_STATE, _S)

  def expected_deltas(thetas):  # [H, S, A] -> [H]
    def step(dist, theta_t):
      pi = jax.nn.softmax(theta_t, axis=-1)
      next_dist = dist @ jnp.einsum("sa,san->sn", pi, transition) * keep
      reward = dist @ jnp.sum(pi * _TAB_REWARD, axis=-1)
      return next_dist, reward + _GAE_DISCOUNT * next_dist @ _GAE_VALUES - dist @ _GAE_VALUES

    _, deltas = jax.lax.scan(step, start_dist, thetas)
    return deltas

  jacobian = jax.jacrev(expected_deltas)(jnp.broadcast_to(theta, (horizon,) + theta.shape))
  lag = jnp.arange(horizon)[:, None] - jnp.arange(horizon)[None, :]  # k − t
  weights = jnp.where(lag >= 0, (_GAE_DISCOUNT * _GAE_LAMBDA) ** jnp.maximum(lag, 0), 0.0)
  return jnp.einsum("kt,ktsa->sa", weights, jacobian).reshape(-1) / horizon


@pytest.fixture(scope="module")
def tabular_gae(tabular):
  transition_real = jax.nn.softmax(
    1.5 * jax.random.normal(jax.random.key(6), (_S, _A, _S)), axis=-1
  )
  start_dist = jnp.mean(tabular.start_obs, axis=0)

  def exact_policy_grad(theta, phi):
    return tabular_gae_policy_grad(theta, jax.nn.softmax(phi, axis=-1), start_dist, _GAE_HORIZON)

  # g_R: the same estimator's exact mean under different "real" dynamics.
  real_grad = tabular_gae_policy_grad(
    tabular.policy_params, transition_real, start_dist, _GAE_HORIZON
  ).reshape(_S, _A)
  return Problem(
    _tabular_policy(),
    _tabular_model(_GAE_TERMINAL_STATE),
    tabular.policy_params,
    tabular.model_params,
    real_grad,
    tabular.start_obs,
    _GAE_HORIZON,
    exact_policy_grad,
    value_fn=lambda values, obs: obs @ values,
    value_params=_GAE_VALUES,
    discount=_GAE_DISCOUNT,
    gae_lambda=_GAE_LAMBDA,
  )


def test_tabular_gae_problem_is_well_posed(tabular_gae):
  g_model = _exact_policy_grad(tabular_gae, tabular_gae.model_params)
  assert abs(_cos(g_model, _flat(tabular_gae.real_grad))) < 0.8
  assert jnp.linalg.norm(_exact_model_grad(tabular_gae, "cosine")) > 0.1


def test_tabular_gae_sampled_policy_gradient_and_cosine_metric(tabular_gae):
  keys = jax.random.split(jax.random.key(7), _TAB_NUM_KEYS)
  _check_policy_grads_and_cosine_metric(
    tabular_gae, *_sample_policy_grads(tabular_gae, "score", keys)
  )


def test_tabular_gae_score_model_gradient_matches_exact(tabular_gae):
  keys = jax.random.split(jax.random.key(8), _TAB_NUM_KEYS)
  samples, _, _ = _sample_model_grads(tabular_gae, "inner", "score", keys)
  exact = _exact_model_grad(tabular_gae, "inner")
  assert _cos(jnp.mean(samples, axis=0), exact) > 0.9
  _, se = _assert_mean_close(
    samples, exact, extra_tol=_baseline_allowance(exact, _TAB_NUM_ROLLOUTS)
  )
  assert se < 0.1 * jnp.linalg.norm(exact)


# ------------------------------------------------------------------------------------------
# Scalar linear-Gaussian system: s' = αs + βa + σε, a = ks + σ_π ξ, r = −(q s² + ρ a²).

_Q, _RHO = 1.0, 0.5
_LQ_HORIZON = 3
_LQ_NUM_ROLLOUTS = 16384
_LQ_NUM_KEYS = 64


def _lq_model():
  """s' = α s + β a + σ ε; φ = {"alpha", "beta", "log_sigma"}; known reward, done ≡ 0."""

  def sample(phi, obs, action, key):
    mean = phi["alpha"] * obs + phi["beta"] * action
    next_obs = mean + jnp.exp(phi["log_sigma"]) * jax.random.normal(key, obs.shape)
    reward = -jnp.sum(_Q * obs**2 + _RHO * action**2)
    return next_obs, reward, jnp.zeros(())

  def log_prob(phi, obs, action, next_obs, reward):
    del reward  # deterministic given (s, a) and independent of φ
    return gaussian_log_prob(
      next_obs, phi["alpha"] * obs + phi["beta"] * action, jnp.exp(phi["log_sigma"])
    )

  return mgjax.Model(sample=sample, log_prob=log_prob)


def lq_return(theta, phi, second_moment, horizon):
  """J_H = −Σ_{t<H} [(q + ρk²) v_t + ρσ_π²] with v_t = E[s_t²].

  v_{t+1} = (α + βk)² v_t + β²σ_π² + σ², since s' = (α + βk) s + βσ_π ξ + σ ε.
  """
  k, policy_std = theta["k"], jnp.exp(theta["log_std"])
  alpha, beta, sigma = phi["alpha"], phi["beta"], jnp.exp(phi["log_sigma"])

  def step(v, _):
    reward = -((_Q + _RHO * k**2) * v + _RHO * policy_std**2)
    return (alpha + beta * k) ** 2 * v + beta**2 * policy_std**2 + sigma**2, reward

  _, rewards = jax.lax.scan(step, second_moment, None, length=horizon)
  return jnp.sum(rewards)


@pytest.fixture(scope="module")
def linear_gaussian():
  # θ needs two components: in one dimension the cosine similarity is ±1.
  theta = {"k": jnp.array(-0.3), "log_std": jnp.log(jnp.array(0.5))}
  phi = linear_model_params(0.8, 0.5, 0.3)
  # The real system's control gain has the opposite sign: cos(g_M, g_R) ≈ −0.54.
  phi_real = linear_model_params(1.0, -0.5, 0.3)
  start_obs = 1.0 + 0.5 * jax.random.normal(jax.random.key(10), (_LQ_NUM_ROLLOUTS, 1))
  # J_H depends on the start states only through E[s_0²]; use the empirical one exactly.
  second_moment = jnp.mean(start_obs**2)

  def exact_return(theta, phi):
    return lq_return(theta, phi, second_moment, _LQ_HORIZON)

  real_grad = jax.tree.map(lambda g: g / _LQ_HORIZON, jax.grad(exact_return)(theta, phi_real))
  return Problem(
    linear_gaussian_policy(),
    _lq_model(),
    theta,
    phi,
    real_grad,
    start_obs,
    _LQ_HORIZON,
    _return_gradient(exact_return, _LQ_HORIZON),
    exact_return,
  )


def test_linear_gaussian_exact_return_matches_brute_force_rollouts(linear_gaussian):
  problem = linear_gaussian
  num_repeats = 64
  policy, model = problem.policy, problem.model

  @jax.jit
  def returns(key):
    def rollout(obs, key):
      def step(obs, key):
        action_key, next_key = jax.random.split(key)
        action = policy.sample(problem.policy_params, obs, action_key)
        next_obs, reward, _ = model.sample(problem.model_params, obs, action, next_key)
        return next_obs, reward

      _, rewards = jax.lax.scan(step, obs, jax.random.split(key, problem.horizon))
      return jnp.sum(rewards)

    starts = jnp.tile(problem.start_obs, (num_repeats, 1))
    return jax.vmap(rollout)(starts, jax.random.split(key, starts.shape[0]))

  samples = returns(jax.random.key(11))
  se = jnp.std(samples) / np.sqrt(samples.shape[0])
  exact = problem.exact_return(problem.policy_params, problem.model_params)
  assert abs(jnp.mean(samples) - exact) <= _Z * se


def test_linear_gaussian_problem_is_well_posed(linear_gaussian):
  g_model = _exact_policy_grad(linear_gaussian, linear_gaussian.model_params)
  assert abs(_cos(g_model, _flat(linear_gaussian.real_grad))) < 0.8
  assert jnp.linalg.norm(_exact_model_grad(linear_gaussian, "cosine")) > 0.1


@pytest.mark.parametrize("estimator", ["score", "pathwise"])
def test_linear_gaussian_sampled_policy_gradient_and_cosine_metric(linear_gaussian, estimator):
  keys = jax.random.split(jax.random.key(12), _LQ_NUM_KEYS)
  _check_policy_grads_and_cosine_metric(
    linear_gaussian, *_sample_policy_grads(linear_gaussian, estimator, keys)
  )


@pytest.mark.parametrize("estimator", ["score", "pathwise"])
@pytest.mark.parametrize("similarity", ["inner", "cosine"])
def test_linear_gaussian_model_gradient_matches_exact(linear_gaussian, similarity, estimator):
  keys = jax.random.split(jax.random.key(13), _LQ_NUM_KEYS)
  samples, _, _ = _sample_model_grads(linear_gaussian, similarity, estimator, keys)
  exact = _exact_model_grad(linear_gaussian, similarity)
  assert _cos(jnp.mean(samples, axis=0), exact) > 0.9
  if similarity == "inner":
    extra = _baseline_allowance(exact, _LQ_NUM_ROLLOUTS) if estimator == "score" else 0.0
    _, se = _assert_mean_close(samples, exact, extra_tol=extra)
    assert se < 0.1 * jnp.linalg.norm(exact)


# ------------------------------------------------------------------------------------------
# Chain rule: for any S the estimate is the "inner" estimate along u = ∂S/∂g at the sampled ĝ_M.


def _check_chain_rule_and_loss_value(problem, similarity, estimator):
  """Same key, so same rollouts: loss = −S(ĝ_M, g_R), and −∇_φ loss = −∇_φ of the "inner" loss
  at real_grad = u, u = ∂S/∂g at the sampled ĝ_M (recovered with the basis trick)."""
  keys = jax.random.split(jax.random.key(30), 4)
  loss_fn = _loss_fn(problem, similarity, estimator)
  inner_loss_fn = _loss_fn(problem, "inner", estimator)
  g_real, unravel = ravel_pytree(problem.real_grad)
  basis = jnp.eye(g_real.shape[0], dtype=g_real.dtype)

  def inner_loss(phi, direction, key):
    return inner_loss_fn(phi, real_grad=unravel(direction), key=key)[0]

  @jax.jit
  def run(keys):
    def one(key):
      g_hat = jax.vmap(lambda e: -inner_loss(problem.model_params, e, key))(basis)
      u = jax.grad(lambda g: _similarity(g, g_real, similarity))(g_hat)
      (loss, metrics), grad = jax.value_and_grad(
        lambda phi: loss_fn(phi, real_grad=problem.real_grad, key=key), has_aux=True
      )(problem.model_params)
      grad_along_u = jax.grad(inner_loss)(problem.model_params, u, key)
      return g_hat, loss, metrics["cosine"], -_flat(grad), -_flat(grad_along_u)

    return jax.vmap(one)(keys)

  g_hat, loss, cosines, grads, expected = run(keys)
  np.testing.assert_allclose(
    loss, jax.vmap(lambda g: -_similarity(g, g_real, similarity))(g_hat), rtol=1e-4, atol=1e-6
  )
  np.testing.assert_allclose(
    cosines, jax.vmap(lambda g: _cos(g, g_real))(g_hat), rtol=1e-4, atol=1e-5
  )
  np.testing.assert_allclose(grads, expected, rtol=1e-4, atol=1e-5 * jnp.max(jnp.abs(expected)))


@pytest.mark.parametrize("similarity", ["cosine", "l2"])
def test_tabular_chain_rule_and_loss_value(tabular_gae, similarity):
  # Integer actions and one-hot observations.
  _check_chain_rule_and_loss_value(tabular_gae, similarity, "score")


@pytest.mark.parametrize("estimator", ["score", "pathwise"])
@pytest.mark.parametrize("similarity", ["cosine", "l2"])
def test_linear_gaussian_chain_rule_and_loss_value(linear_gaussian, similarity, estimator):
  _check_chain_rule_and_loss_value(linear_gaussian, similarity, estimator)


# ------------------------------------------------------------------------------------------
# policy_gradient


def test_policy_gradient_softmax_by_hand():
  policy = _tabular_policy()
  theta = jnp.zeros((2, 2))  # π(·|s) = (½, ½) everywhere
  obs = jax.nn.one_hot(jnp.array([0, 0, 1]), 2)
  actions = jnp.array([0, 1, 1])
  advantages = jnp.array([2.0, -1.0, 4.0])
  grad = jax.jit(functools.partial(mgjax.policy_gradient, policy=policy))(
    theta, obs=obs, actions=actions, advantages=advantages
  )
  # ∇_θ[s] log π(a|s) = onehot(a) − π(·|s), averaged over the batch of 3 with weights A:
  #   θ[0]: (2·(½, −½) − 1·(−½, ½)) / 3 = (½, −½)
  #   θ[1]: 4·(−½, ½) / 3 = (−⅔, ⅔)
  np.testing.assert_allclose(grad, [[0.5, -0.5], [-2 / 3, 2 / 3]], rtol=1e-6)


def test_policy_gradient_gaussian_pytree():
  policy = linear_gaussian_policy()
  theta = {"k": jnp.array(0.7), "log_std": jnp.log(jnp.array(0.4))}
  obs_key, action_key, adv_key = jax.random.split(jax.random.key(20), 3)
  obs = jax.random.normal(obs_key, (16, 1))
  actions = jax.random.normal(action_key, (16, 1))
  advantages = jax.random.normal(adv_key, (16,))
  grad = jax.jit(functools.partial(mgjax.policy_gradient, policy=policy))(
    theta, obs=obs, actions=actions, advantages=advantages
  )
  # log N(a; ks, σ²): ∂/∂k = (a − ks) s / σ², ∂/∂log σ = (a − ks)² / σ² − 1.
  z = ((actions - 0.7 * obs) / 0.4)[:, 0]
  np.testing.assert_allclose(grad["k"], jnp.mean(advantages * z * obs[:, 0] / 0.4), rtol=1e-5)
  np.testing.assert_allclose(grad["log_std"], jnp.mean(advantages * (z**2 - 1)), rtol=1e-5)


# ------------------------------------------------------------------------------------------
# Advantage conventions: ĝ_M with Â_t transformed over the alive steps (centred, normalised)


def _hand_model_grad(problem, phi, key, transform):
  """ĝ_M by hand from `mgjax.rollout` with the same key (the estimator's rollout): Â_t from
  `mgjax.losses.gae` with the problem's zero value, transformed over the alive steps; a
  differentiable function of φ through the reparameterised rollout."""
  obs, actions, rewards, dones, alive = mgjax.rollout(
    phi,
    problem.policy_params,
    problem.start_obs,
    key,
    policy=problem.policy,
    model=problem.model,
    horizon=problem.horizon,
  )
  values = jnp.zeros(obs.shape[:2])
  adv, _ = mgjax.gae(
    rewards, values[:-1], values[-1], dones, discount=1.0, gae_lambda=1.0, differentiable=True
  )
  coeffs = (alive * mgjax.transform_advantages(adv, transform, alive)).reshape(-1)
  flat_obs = obs[:-1].reshape((-1,) + obs.shape[2:])
  flat_actions = actions.reshape((-1,) + actions.shape[2:])
  log_pi = jax.vmap(problem.policy.log_prob, in_axes=(None, 0, 0))
  return _flat(
    jax.grad(lambda th: jnp.mean(log_pi(th, flat_obs, flat_actions) * coeffs))(
      problem.policy_params
    )
  )


@pytest.mark.parametrize("transform", ["raw", "centred", "normalised"])
def test_model_grad_under_each_advantage_convention_is_the_hand_computed_one(
  linear_gaussian, transform
):
  """metrics["model_grad"] is ∇_θ mean[m_t log π(a_t|s_t) T(Â)_t] on the loss's own rollout,
  and for `pathwise` −∇_φ loss is the exact derivative ∇_φ S(ĝ_M(φ), g_R) of that function."""
  problem = linear_gaussian
  key = jax.random.key(31)
  g_real = _flat(problem.real_grad)
  for estimator in ("score", "pathwise"):
    loss_fn = functools.partial(
      _loss_fn(problem, "cosine", estimator), advantage_transform=transform
    )
    (loss, metrics), grad = jax.jit(
      jax.value_and_grad(
        lambda phi: loss_fn(phi, real_grad=problem.real_grad, key=key), has_aux=True
      )
    )(problem.model_params)
    hand = _hand_model_grad(problem, problem.model_params, key, transform)
    np.testing.assert_allclose(_flat(metrics["model_grad"]), hand, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(loss, -_cos(hand, g_real), rtol=1e-5)
  exact = jax.grad(
    lambda phi: _similarity(_hand_model_grad(problem, phi, key, transform), g_real, "cosine")
  )(problem.model_params)
  np.testing.assert_allclose(-_flat(grad), _flat(exact), rtol=1e-4, atol=1e-6)


def test_advantage_conventions_differ_and_normalised_ignores_the_reward_scale(linear_gaussian):
  problem = linear_gaussian
  key = jax.random.key(32)

  def g_hat(transform, scale=1.0):
    model = problem.model._replace(
      sample=lambda phi, s, a, k: (lambda n, r, d: (n, scale * r, d))(
        *problem.model.sample(phi, s, a, k)
      )
    )
    loss_fn = _loss_fn(problem._replace(model=model), "cosine", "score")
    _, metrics = loss_fn(
      problem.model_params,
      real_grad=problem.real_grad,
      key=key,
      advantage_transform=transform,
    )
    return _flat(metrics["model_grad"])

  raw, centred, normalised = (g_hat(t) for t in ("raw", "centred", "normalised"))
  assert jnp.linalg.norm(raw - centred) > 1e-3 * jnp.linalg.norm(raw)
  np.testing.assert_allclose(g_hat("raw", 3.0), 3.0 * raw, rtol=1e-5)
  np.testing.assert_allclose(g_hat("centred", 3.0), 3.0 * centred, rtol=1e-5)
  np.testing.assert_allclose(g_hat("normalised", 3.0), normalised, rtol=1e-4, atol=1e-7)


def test_unknown_advantage_convention_is_named():
  with pytest.raises(ValueError, match=r"^advantage_transform='median': unknown"):
    mgjax.model_gradient_loss(
      {"w": jnp.zeros(2)},
      policy_params={"k": jnp.zeros(2)},
      value_params=0.0,
      real_grad={"k": jnp.zeros(2)},
      start_obs=jnp.zeros((2, 1)),
      key=jax.random.key(0),
      policy=None,
      model=None,
      value_fn=_zero_value,
      horizon=2,
      estimator="score",
      advantage_transform="median",
    )
