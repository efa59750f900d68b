"""The model-gradient loss for off-policy actors (SAC, DDPG, TD3): the policy objective is a
per-state loss ℓ(θ, s, ξ) averaged over replay states, so the model enters ĝ_M only through
the states it generates (notation: `mgjax.model_gradient`; docs/design.md, "The MG
objective", applied to mg-sac)."""

from typing import Any, Callable

import chex
import jax
import jax.numpy as jnp

from mgjax.model_gradient_common import (
  _alignment_loss,
  _check_loss_inputs,
  _estimator_rollout,
  _flatten_steps,
  _per_state,
)
from mgjax.types import Model, Params, Policy

StateLoss = Callable[[Params, jax.Array, jax.Array], jax.Array]


def _batched_actor_loss(
  actor_loss: StateLoss, params: Params, obs: jax.Array, keys: jax.Array
) -> jax.Array:
  """ℓ(θ, s_b, key_b) for obs [B, ...], keys [B] -> [B]."""
  message = "actor_loss(policy_params, obs, key) must return a scalar per state"
  return _per_state(actor_loss, params, obs, keys, message)


def actor_gradient(
  policy_params: Params, *, actor_loss: StateLoss, obs: jax.Array, key: jax.Array
) -> Params:
  """∇_θ mean_b ℓ(θ, s_b, key_b) with keys jax.random.split(key, B).

  Args:
    policy_params: θ.
    actor_loss: ℓ(policy_params, obs, key) -> scalar, the per-state policy objective (SAC:
      α log π(a|s) − min_j Q_j(s, a) with a reparameterised by key; critics held fixed;
      `mgjax.agents.sac.actor_objective`).
    obs: [B, obs_size] states, treated as data.
  Returns:
    A pytree shaped like `policy_params`.
  """
  chex.assert_rank(obs, 2, custom_message="obs must be [B, obs_size]")
  obs = jax.lax.stop_gradient(obs)  # states are data: the θ-derivative sees only ℓ.
  keys = jax.random.split(key, obs.shape[0])

  def mean_loss(params):
    return jnp.mean(_batched_actor_loss(actor_loss, params, obs, keys))

  return jax.grad(mean_loss)(policy_params)


def actor_model_gradient_loss(
  model_params: Params,
  *,
  policy_params: Params,
  real_grad: Params,
  start_obs: jax.Array,
  key: jax.Array,
  policy: Policy,
  model: Model,
  actor_loss: StateLoss,
  horizon: int,
  estimator: str,
  similarity: str = "cosine",
  baseline: bool = True,
) -> tuple[jax.Array, dict[str, Any]]:
  """Model-gradient loss for an off-policy actor: −jax.grad of it w.r.t. φ estimates
  ∇_φ S(ĝ_M(φ), g_R) where ĝ_M is the actor-loss gradient on the states M_φ generates.

  One H-step rollout of π_θ per row of start_obs ([N, obs_size]) gives the generated states
  s_1..s_H with masks m_t = 1 while the rollout goes on: a state the model predicts terminal,
  and every state after it, gets 0 (the actor never acts in them, neither in a replay
  buffer's `obs` nor in the real data g_R is computed on), and

    ĝ_M = ∇_θ (1/(N H)) Σ_τ Σ_{t=1..H} m_t ℓ(θ, s_t, ξ_t)   (ξ_t fixed keys; the real start
                                                            states s_0 do not depend on φ)
    u   = ∂S/∂g at g = ĝ_M   (held fixed)
    w_t = ⟨∇_θ ℓ(θ, s_t, ξ_t), u⟩                          (one jvp for the batch)
    F(τ) = (1/H) Σ_t m_t w_t,   so ⟨ĝ_M, u⟩ = mean_τ F(τ).

  `pathwise`: ∇_φ mean_τ F(τ) through the reparameterised rollout, s_t = s_t(φ).
  `score`: mean_τ[(F(τ) − b_τ) Σ_t alive_t ∇_φ log M_φ(s_{t+1}, r_t|s_t, a_t)], b_τ the
  leave-one-out mean of F (`baseline=False`: b = 0).
  g_R is `actor_gradient` on real states; it must use the same ℓ (and the same scale).

  Under jit, as for `model_gradient_loss`: close over policy, model, actor_loss, horizon,
  similarity, estimator and baseline (functools.partial) and pass model_params,
  policy_params, real_grad, start_obs and key as arguments. An `actor_loss` that closes over
  arrays of the caller's (SAC's critics and α) is built inside the jitted function.

  Args:
    model_params: φ, the argument to differentiate.
    policy_params: θ (constant here); the rollout acts with policy.sample, which for
      `pathwise` must be differentiable in the observation (reparameterised).
    real_grad: g_R, a pytree with the tree structure and leaf shapes of policy_params
      (constant).
    start_obs: [N, obs_size] real start states. key: PRNG key for the rollout and for ξ.
    policy, model: pure unbatched functions (`mgjax.Policy`, `mgjax.Model`).
    actor_loss: ℓ(policy_params, obs, key) -> scalar, as in `actor_gradient`.
    horizon: H, a Python int. similarity: "cosine" (default), "inner" or "l2".
    estimator: "pathwise" or "score", required.
  Returns:
    (loss, metrics): the loss has value −S(ĝ_M, g_R); metrics as `model_gradient_loss`'s
    (cosine, similarity, model_grad = ĝ_M, its norm and g_R's, mean model reward,
    alive_fraction = mean of m_t).
  """
  real_grad = _check_loss_inputs(
    policy_params, real_grad, start_obs, horizon, similarity, estimator, baseline
  )
  pathwise = estimator == "pathwise"
  real_grad = jax.lax.stop_gradient(real_grad)  # g_R is the fixed target.
  policy_params = jax.lax.stop_gradient(policy_params)

  rollout_key, loss_key = jax.random.split(key)
  trajectory = _estimator_rollout(
    model_params,
    policy_params,
    start_obs,
    rollout_key,
    policy=policy,
    model=model,
    horizon=horizon,
    pathwise=pathwise,
  )
  obs, _, _, dones, alive = trajectory
  mask = alive * (1.0 - dones)  # s_{t+1} is acted in iff step t was alive and not terminal
  states = _flatten_steps(obs[1:])
  keys = jax.random.split(loss_key, states.shape[0])
  return _alignment_loss(
    model_params,
    policy_params,
    real_grad,
    terms=lambda p, s: _batched_actor_loss(actor_loss, p, s, keys),
    inputs=states,
    mask=mask,
    advantages=None,
    trajectory=trajectory,
    model=model,
    horizon=horizon,
    similarity=similarity,
    pathwise=pathwise,
    baseline=baseline,
  )
