"""The model-gradient objective: align the policy gradient on model data with the real one.

Notation (docs/design.md, "The MG objective"): θ policy, φ model, ĝ_M(φ) the policy gradient
estimated on rollouts in M_φ, g_R the policy gradient on real data (a constant here), S a
similarity. The model ascends S(ĝ_M(φ), g_R). By the chain rule ∇_φ S = J_φ(ĝ_M)ᵀ u with
u = ∂S/∂g at g = ĝ_M, so every similarity reduces to the gradient of ⟨ĝ_M(φ), sg(u)⟩,
which is estimated either by the score function of the model's transitions (`score`) or by
differentiating a reparameterised rollout (`pathwise`).

Every public function checks its inputs when it is traced (shapes and tree structures only:
nothing runs at run time) and names the argument at fault.

Under `jax.jit`, pass the arrays and parameter pytrees as arguments and close over the rest
with `functools.partial` (or mark it static): `policy`, `model`, `value_fn` and `actor_loss`
are functions, `horizon` sets the rollout's length, and `similarity`, `estimator` and
`baseline` choose the program. `discount` and `gae_lambda` may be either.

This module holds the policy-model loss (`policy_gradient`, `model_gradient_loss`,
`make_model_gradient_loss`) and gives every public name of the objective: the checks,
similarities, rollout and alignment step both losses share are in
`mgjax.model_gradient_common`, the off-policy actor's loss (`actor_gradient`,
`actor_model_gradient_loss`) in `mgjax.actor_model_gradient`.
"""

import functools
from typing import Any, Callable

import chex
import jax
import jax.numpy as jnp

from mgjax.actor_model_gradient import StateLoss, actor_gradient, actor_model_gradient_loss
from mgjax.losses import ADVANTAGE_TRANSFORMS, gae, transform_advantages
from mgjax.model_gradient_common import (
  ESTIMATORS,
  SIMILARITIES,
  _alignment_loss,
  _check_horizon,
  _check_loss_inputs,
  _check_options,
  _estimator_rollout,
  _flatten_steps,
  _per_state,
  rollout,
  similarity_value,
)
from mgjax.types import Model, Params, Policy

__all__ = [
  "ESTIMATORS",
  "SIMILARITIES",
  "StateLoss",
  "actor_gradient",
  "actor_model_gradient_loss",
  "make_model_gradient_loss",
  "model_gradient_loss",
  "policy_gradient",
  "rollout",
  "similarity_value",
]


def _check_transform(advantage_transform: str) -> None:
  if advantage_transform not in ADVANTAGE_TRANSFORMS:
    raise ValueError(
      f"advantage_transform={advantage_transform!r}: unknown; choose one of {ADVANTAGE_TRANSFORMS}"
    )


def _batched_log_prob(
  policy: Policy, params: Params, obs: jax.Array, actions: jax.Array
) -> jax.Array:
  """log π(a_b|s_b) for obs [B, ...], actions [B, ...] -> [B]."""
  message = "policy.log_prob(params, obs, action) must return a scalar per state"
  return _per_state(policy.log_prob, params, obs, actions, message)


def policy_gradient(
  policy_params: Params,
  *,
  policy: Policy,
  obs: jax.Array,
  actions: jax.Array,
  advantages: jax.Array,
) -> Params:
  """Score-function policy gradient ∇_θ mean_b[log π_θ(a_b|s_b) · A_b].

  Args:
    policy_params: θ.
    policy: the policy's pure functions; only `log_prob` is used (a scalar per state).
    obs: [B, obs_size]; actions: [B, ...]; advantages: [B], treated as constants.
  Returns:
    A pytree shaped like `policy_params`.
  """
  chex.assert_rank(advantages, 1, custom_message="advantages must be [B], one per state")
  chex.assert_rank(obs, 2, custom_message="obs must be [B, obs_size]")
  chex.assert_equal_shape_prefix(
    [obs, actions, advantages],
    1,
    custom_message=("obs, actions and advantages must have the same number of rows B"),
  )
  advantages = jax.lax.stop_gradient(advantages)  # advantages are data, not functions of θ.

  def surrogate(params):
    return jnp.mean(_batched_log_prob(policy, params, obs, actions) * advantages)

  return jax.grad(surrogate)(policy_params)


def _zero_value(value_params: Params, obs: jax.Array) -> jax.Array:
  del value_params
  return jnp.zeros((), obs.dtype)


def _model_advantages(
  trajectory,
  value_params: Params,
  value_fn: Callable[[Params, jax.Array], jax.Array] | None,
  discount: float,
  gae_lambda: float,
  advantage_transform: str,
  pathwise: bool,
) -> jax.Array:
  """Â_t [H, N] on a model rollout: GAE of the model rewards with V_ψ(s) = value_fn(ψ, s) (None:
  V = 0; ψ held fixed), bootstrap V(s_H), zero after predicted termination, then
  `transform_advantages` over the alive steps. For `pathwise`, Â_t stays a function of φ
  through the rewards and V(s_t(φ))."""
  value_fn = _zero_value if value_fn is None else value_fn
  value_params = jax.lax.stop_gradient(value_params)
  obs, _, rewards, dones, alive = trajectory
  values = jax.vmap(jax.vmap(value_fn, in_axes=(None, 0)), in_axes=(None, 0))(value_params, obs)
  chex.assert_shape(
    values,
    obs.shape[:2],
    custom_message=("value_fn(value_params, obs) must return a scalar per state"),
  )
  advantages, _ = gae(
    rewards,
    values[:-1],
    values[-1],
    dones,
    discount=discount,
    gae_lambda=gae_lambda,
    differentiable=pathwise,
  )
  return transform_advantages(advantages, advantage_transform, alive)


def model_gradient_loss(
  model_params: Params,
  *,
  policy_params: Params,
  value_params: Params = None,
  real_grad: Params,
  start_obs: jax.Array,
  key: jax.Array,
  policy: Policy,
  model: Model,
  value_fn: Callable[[Params, jax.Array], jax.Array] | None = None,
  horizon: int,
  estimator: str,
  discount: float = 0.99,
  gae_lambda: float = 0.95,
  similarity: str = "cosine",
  baseline: bool = True,
  advantage_transform: str = "raw",
) -> tuple[jax.Array, dict[str, Any]]:
  """Model-gradient loss: −jax.grad of it w.r.t. φ estimates ∇_φ S(ĝ_M(φ), g_R).

  One H-step rollout per row of start_obs ([N, obs_size]) gives, with alive masks m_t,
  GAE advantages Â_t (model rewards, V_ψ = value_fn(value_params, ·), bootstrap V(s_H),
  zero after predicted termination; no normalisation) and

    ĝ_M = ∇_θ (1/(N H)) Σ_τ Σ_t m_t log π_θ(a_t|s_t) Â_t           (same convention as
                                                                   `policy_gradient`)
    u   = ∂S/∂g at g = ĝ_M   (held fixed)
    w_t = ⟨∇_θ log π_θ(a_t|s_t), u⟩                                 (one jvp for the batch)
    F(τ) = (1/H) Σ_t m_t w_t Â_t,   so ⟨ĝ_M, u⟩ = mean_τ F(τ).

  `score`:    ∇_φ⟨ĝ_M, u⟩ ≈ mean_τ[(F(τ) − b_τ) Σ_t m_t ∇_φ log M_φ(s_{t+1}, r_t|s_t, a_t)],
              b_τ the leave-one-out mean of F (unbiased; `baseline=False` gives b = 0).
              F uses the whole trajectory: each transition can move every Â_t.
  `pathwise`: ∇_φ mean_τ F(τ) through the reparameterised rollout (s_t, a_t, r_t, Â_t all
              functions of φ; a_t is data inside the θ-derivative).

  The returned loss has value −S(ĝ_M, g_R) and gradient −(surrogate gradient).
  With discount = gae_lambda = 1 and value 0, E[ĝ_M] = ∇_θ E[Σ_{t<H} r_t] / H.

  Under jit, close over the functions and the settings that shape the program:

    loss_fn = functools.partial(model_gradient_loss, policy=policy, model=model,
                                value_fn=value_fn, horizon=10, estimator="score")
    step = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))
    (loss, metrics), grad = step(phi, policy_params=theta, value_params=psi,
                                 real_grad=g_real, start_obs=obs, key=key)

  Args:
    model_params: φ, the argument to differentiate.
    policy_params, value_params: θ and ψ (constants here).
    real_grad: g_R, a pytree with the tree structure and leaf shapes of policy_params
      (constant).
    start_obs: [N, obs_size] real start states. key: PRNG key for the rollout.
    policy, model: pure unbatched functions (`mgjax.Policy`, `mgjax.Model`); log_prob
      returns a scalar per state (per transition).
    value_fn: value_fn(value_params, obs) -> scalar; None (and value_params None): V = 0.
    horizon: H, a Python int. discount: γ. gae_lambda: λ.
    estimator: "score" or "pathwise", required (no default suits every model).
    similarity: "cosine" (default), "inner" or "l2".
    advantage_transform: "raw" (default), "centred" or "normalised": Â_t as
      `mgjax.losses.transform_advantages` gives it over the alive steps of the N rollouts;
      take g_R with the same convention.
  Returns:
    (loss, metrics) with metrics["cosine"] = cos(ĝ_M, g_R), metrics["similarity"] = S,
    metrics["model_grad"] = ĝ_M itself (shaped like policy_params), norms of ĝ_M and g_R,
    mean model reward and the fraction of steps alive.
  """
  real_grad = _check_loss_inputs(
    policy_params, real_grad, start_obs, horizon, similarity, estimator, baseline
  )
  _check_transform(advantage_transform)
  pathwise = estimator == "pathwise"
  real_grad = jax.lax.stop_gradient(real_grad)  # g_R is the fixed target.
  policy_params = jax.lax.stop_gradient(policy_params)

  trajectory = _estimator_rollout(
    model_params,
    policy_params,
    start_obs,
    key,
    policy=policy,
    model=model,
    horizon=horizon,
    pathwise=pathwise,
  )
  advantages = _model_advantages(
    trajectory, value_params, value_fn, discount, gae_lambda, advantage_transform, pathwise
  )
  obs, actions, _, _, alive = trajectory
  log_pi = functools.partial(_batched_log_prob, policy)
  return _alignment_loss(
    model_params,
    policy_params,
    real_grad,
    terms=lambda p, x: log_pi(p, *x),
    inputs=(_flatten_steps(obs[:-1]), _flatten_steps(actions)),
    mask=alive,
    advantages=advantages,
    trajectory=trajectory,
    model=model,
    horizon=horizon,
    similarity=similarity,
    pathwise=pathwise,
    baseline=baseline,
  )


def make_model_gradient_loss(
  policy: Policy,
  model: Model,
  horizon: int,
  estimator: str,
  *,
  value_fn: Callable[[Params, jax.Array], jax.Array] | None = None,
  discount: float = 0.99,
  gae_lambda: float = 0.95,
  similarity: str = "cosine",
  baseline: bool = True,
  advantage_transform: str = "raw",
) -> Callable[..., tuple[jax.Array, dict[str, Any]]]:
  """`model_gradient_loss` with its functions and the settings that shape its program fixed,
  as an optax factory fixes its settings:

    loss = make_model_gradient_loss(policy, model, horizon=10, estimator="score")
    step = jax.jit(jax.value_and_grad(loss, has_aux=True))
    (value, metrics), grad = step(phi, theta, psi, g_real, start_obs, key)

  -> loss(model_params, policy_params, value_params, real_grad, start_obs, key)
  -> (loss, metrics), arrays and pytrees only, so it jits and vmaps as it is. The settings are
  checked here, the arrays when the loss is traced; value_fn=None means V = 0 (pass
  value_params=None)."""
  _check_options(similarity, estimator)
  _check_horizon(horizon)
  _check_transform(advantage_transform)

  def loss(model_params, policy_params, value_params, real_grad, start_obs, key):
    return model_gradient_loss(
      model_params,
      policy_params=policy_params,
      value_params=value_params,
      real_grad=real_grad,
      start_obs=start_obs,
      key=key,
      policy=policy,
      model=model,
      value_fn=value_fn,
      horizon=horizon,
      estimator=estimator,
      discount=discount,
      gae_lambda=gae_lambda,
      similarity=similarity,
      baseline=baseline,
      advantage_transform=advantage_transform,
    )

  return loss
