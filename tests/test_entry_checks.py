"""The entry checks of the losses and estimators: each mistake below used to give a plausible
wrong number (or an error far from its cause); now it fails when traced, naming the argument.

User code runs with NumPy rank promotion allowed (the tests raise on it, conftest.py), so the
cases that broadcast run under `jax.numpy_rank_promotion("allow")`.
"""

import functools

import jax
import jax.numpy as jnp
import pytest

import mgjax
from mgjax import losses

_OBS, _ACT, _N, _H = 3, 2, 4, 2


def _policy(vector_log_prob=False):
  """a = W s + b + 0.5 ξ; θ = {"W": [A, D], "b": [A]} (W not square: a transposed leaf has
  the same size and a different shape)."""

  def sample(theta, obs, key):
    return theta["W"] @ obs + theta["b"] + 0.5 * jax.random.normal(key, (_ACT,))

  def log_prob(theta, obs, action):
    per_dim = jax.scipy.stats.norm.logpdf(action, theta["W"] @ obs + theta["b"], 0.5)
    return per_dim if vector_log_prob else jnp.sum(per_dim)

  return mgjax.Policy(sample, log_prob)


def _model(vector_log_prob=False):
  """s' = s + 0.1 A a + 0.1 ε (A = φ, [D, A]); reward −|s|²; never done."""

  def sample(phi, obs, action, key):
    next_obs = obs + 0.1 * phi @ action + 0.1 * jax.random.normal(key, (_OBS,))
    return next_obs, -jnp.sum(obs**2), jnp.float32(0.0)

  def log_prob(phi, obs, action, next_obs, reward):
    del reward
    per_dim = jax.scipy.stats.norm.logpdf(next_obs, obs + 0.1 * phi @ action, 0.1)
    return per_dim if vector_log_prob else jnp.sum(per_dim)

  return mgjax.Model(sample, log_prob)


_THETA = {"W": jnp.ones((_ACT, _OBS)), "b": jnp.zeros(_ACT)}
_PHI = jnp.ones((_OBS, _ACT))
_START = jnp.ones((_N, _OBS))


def _value(psi, obs):
  return psi * jnp.sum(obs)  # a scalar


def _mg_kwargs(**overrides):
  """model_gradient_loss's arguments on the problem above, any of them replaced."""
  kwargs = dict(
    policy_params=_THETA,
    value_params=jnp.float32(0.5),
    real_grad=_THETA,
    start_obs=_START,
    key=jax.random.key(0),
    policy=_policy(),
    model=_model(),
    value_fn=_value,
    horizon=_H,
    estimator="score",
  )
  return {**kwargs, **overrides}


def _mg_loss(**overrides):
  return mgjax.model_gradient_loss(_PHI, **_mg_kwargs(**overrides))


def _actor_loss(theta, obs, key):
  return jnp.sum(_policy().sample(theta, obs, key) ** 2)


def _actor_kwargs(**overrides):
  kwargs = dict(
    policy_params=_THETA,
    real_grad=_THETA,
    start_obs=_START,
    key=jax.random.key(0),
    policy=_policy(),
    model=_model(),
    actor_loss=_actor_loss,
    horizon=_H,
    estimator="pathwise",
  )
  return {**kwargs, **overrides}


def _actor_mg_loss(**overrides):
  return mgjax.actor_model_gradient_loss(_PHI, **_actor_kwargs(**overrides))


def test_valid_inputs_pass_and_the_checks_add_nothing_to_the_program():
  loss, metrics = jax.jit(_mg_loss)()
  assert jnp.isfinite(loss) and metrics["model_grad"]["W"].shape == (_ACT, _OBS)
  assert jnp.isfinite(jax.jit(_actor_mg_loss)()[0])
  # The checks run while tracing: the program holds no callback (as a run-time check would).
  for estimator in ("score", "pathwise"):
    loss_fn = functools.partial(mgjax.model_gradient_loss, **_mg_kwargs(estimator=estimator))
    program = str(jax.make_jaxpr(jax.grad(lambda phi: loss_fn(phi)[0]))(_PHI))
    assert "callback" not in program


# ------------------------------------------------------------------------------ real_grad
def test_real_grad_with_a_missing_leaf_raises():
  # _vdot zipped the leaves: without "b" the similarity silently used W alone.
  with pytest.raises(
    ValueError, match=r"real_grad must have the leaves of policy_params: missing \['b'\]"
  ):
    _mg_loss(real_grad={"W": _THETA["W"]})


def test_real_grad_with_a_transposed_leaf_raises():
  # jnp.vdot flattens: a transposed W gave a plausible inner product of mismatched entries.
  with pytest.raises(ValueError, match="real_grad must have the leaf shapes"):
    _mg_loss(real_grad={"W": _THETA["W"].T, "b": _THETA["b"]})


def test_actor_real_grad_with_a_transposed_leaf_raises():
  with pytest.raises(ValueError, match="real_grad must have the leaf shapes"):
    _actor_mg_loss(real_grad={"W": _THETA["W"].T, "b": _THETA["b"]})


def test_similarity_value_of_mismatched_trees_raises():
  with pytest.raises(ValueError, match="g_real must have the leaves of g"):
    mgjax.similarity_value(_THETA, {"W": _THETA["W"]}, "cosine")


# ------------------------------------------------------------------------------ batches
def test_policy_gradient_advantages_of_rank_2_raise():
  # [B, 1] advantages times [B] log-probs broadcast to [B, B]: a mean over all pairs.
  obs = jnp.ones((_N, _OBS))
  actions = jnp.zeros((_N, _ACT))
  with jax.numpy_rank_promotion("allow"), pytest.raises(AssertionError, match="advantages"):
    mgjax.policy_gradient(
      _THETA, policy=_policy(), obs=obs, actions=actions, advantages=jnp.ones((_N, 1))
    )


def test_start_obs_of_rank_1_raises():
  # One state [D] read as D one-dimensional start states.
  with pytest.raises(AssertionError, match="start_obs must be"):
    _mg_loss(start_obs=jnp.ones(_OBS))
  with pytest.raises(AssertionError, match="start_obs must be"):
    _actor_mg_loss(start_obs=jnp.ones(_OBS))


def test_traced_horizon_raises():
  with pytest.raises(ValueError, match="horizon"):
    jax.jit(lambda h: _mg_loss(horizon=h))(2)


# ------------------------------------------------------------------------------ user functions
def test_value_fn_returning_a_vector_raises():
  # A value head of shape [1] left unindexed.
  with jax.numpy_rank_promotion("allow"), pytest.raises(AssertionError, match="value_fn"):
    _mg_loss(value_fn=lambda psi, obs: psi * obs[:1])


def test_policy_log_prob_per_dimension_raises():
  # A log-density not summed over the action's dimensions.
  with jax.numpy_rank_promotion("allow"), pytest.raises(AssertionError, match="policy.log_prob"):
    _mg_loss(policy=_policy(vector_log_prob=True))


def test_model_log_prob_per_dimension_raises():
  with jax.numpy_rank_promotion("allow"), pytest.raises(AssertionError, match="model.log_prob"):
    _mg_loss(model=_model(vector_log_prob=True))


def test_actor_loss_per_dimension_raises():
  per_dim = lambda theta, obs, key: _policy().sample(theta, obs, key) ** 2
  with jax.numpy_rank_promotion("allow"), pytest.raises(AssertionError, match="actor_loss"):
    _actor_mg_loss(actor_loss=per_dim)
  with pytest.raises(AssertionError, match="actor_loss"):
    mgjax.actor_gradient(_THETA, actor_loss=per_dim, obs=_START, key=jax.random.key(0))


def test_estimator_is_required():
  # The two losses once had different defaults ("score" and "pathwise"): now none.
  kwargs = _mg_kwargs()
  del kwargs["estimator"]
  with pytest.raises(TypeError, match="estimator"):
    mgjax.model_gradient_loss(_PHI, **kwargs)
  kwargs = _actor_kwargs()
  del kwargs["estimator"]
  with pytest.raises(TypeError, match="estimator"):
    mgjax.actor_model_gradient_loss(_PHI, **kwargs)


# ------------------------------------------------------------------------------ losses.py
def test_ppo_policy_loss_advantages_of_rank_2_raise():
  log_prob = jnp.zeros(_N)
  with jax.numpy_rank_promotion("allow"), pytest.raises(AssertionError, match="advantages"):
    losses.ppo_policy_loss(log_prob, log_prob, jnp.ones((_N, 1)), 0.2)


def test_gae_values_with_a_trailing_axis_raise():
  rewards = jnp.zeros((_H, _N))
  with jax.numpy_rank_promotion("allow"), pytest.raises(AssertionError, match="values"):
    losses.gae(
      rewards, jnp.zeros((_H, _N, 1)), jnp.zeros(_N), rewards, discount=0.9, gae_lambda=0.9
    )


def test_value_loss_targets_with_a_trailing_axis_raise():
  with jax.numpy_rank_promotion("allow"), pytest.raises(AssertionError, match="targets"):
    losses.value_loss(jnp.zeros(_N), jnp.zeros((_N, 1)))


# ------------------------------------------------------------------------------ the loss API
def test_factory_loss_is_the_loss_and_jits_without_partial():
  loss = mgjax.make_model_gradient_loss(_policy(), _model(), _H, "score", value_fn=_value)
  psi, key = jnp.float32(0.5), jax.random.key(0)
  (value, metrics), grad = jax.jit(jax.value_and_grad(loss, has_aux=True))(
    _PHI, _THETA, psi, _THETA, _START, key
  )
  (direct, _), direct_grad = jax.value_and_grad(
    lambda phi: mgjax.model_gradient_loss(phi, **_mg_kwargs()), has_aux=True
  )(_PHI)
  assert jnp.allclose(value, direct) and jnp.allclose(grad, direct_grad)
  assert metrics["model_grad"]["W"].shape == (_ACT, _OBS)


def test_factory_checks_its_settings_at_once():
  with pytest.raises(ValueError, match="^estimator='reinforce': unknown"):
    mgjax.make_model_gradient_loss(_policy(), _model(), _H, "reinforce")
  with pytest.raises(ValueError, match="^horizon=0"):
    mgjax.make_model_gradient_loss(_policy(), _model(), 0, "score")
  with pytest.raises(ValueError, match="^advantage_transform='z'"):
    mgjax.make_model_gradient_loss(_policy(), _model(), _H, "score", advantage_transform="z")


def test_no_value_function_means_a_zero_value():
  zero = lambda psi, obs: jnp.float32(0.0)
  without = _mg_loss(value_fn=None, value_params=None)
  with_zero = _mg_loss(value_fn=zero)
  assert jnp.allclose(without[0], with_zero[0])
  assert jnp.allclose(without[1]["model_grad"]["W"], with_zero[1]["model_grad"]["W"])


def test_real_grad_as_a_frozen_dict_of_the_same_leaves_is_accepted():
  from flax.core import FrozenDict

  frozen = FrozenDict({"b": _THETA["b"], "W": _THETA["W"]})
  assert jnp.allclose(_mg_loss(real_grad=frozen)[0], _mg_loss()[0])
  with pytest.raises(ValueError, match=r"not in policy_params: \['c'\]"):
    _mg_loss(real_grad={**_THETA, "c": jnp.zeros(1)})


def test_integer_start_states_are_named():
  with pytest.raises(ValueError, match="^start_obs: dtype int32; states must be floating"):
    _mg_loss(start_obs=jnp.ones((_N, _OBS), jnp.int32))


def test_score_estimator_with_one_rollout_is_refused_unless_without_baseline():
  with pytest.raises(ValueError, match="^start_obs: 1 row; the score estimator's leave-one-out"):
    _mg_loss(start_obs=_START[:1])
  with pytest.raises(ValueError, match="^start_obs: 1 row"):
    _actor_mg_loss(start_obs=_START[:1], estimator="score")
  assert jnp.isfinite(_mg_loss(start_obs=_START[:1], baseline=False)[0])
