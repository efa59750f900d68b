"""Pure losses shared by the algorithms: GAE, PPO surrogate and value losses, Gaussian NLL.

All functions are pure and jittable. Time-major conventions follow brax
(`brax/training/agents/ppo/losses.py`): arrays are `[T, ...]` with any trailing batch axes.
"""
import math

import chex
import jax
import jax.numpy as jnp

_LOG_2PI = math.log(2.0 * math.pi)


def gae(rewards: jax.Array, values: jax.Array, bootstrap_value: jax.Array,
        terminations: jax.Array, truncations: jax.Array | None = None, *,
        discount: float, gae_lambda: float,
        differentiable: bool = False) -> tuple[jax.Array, jax.Array]:
  """Generalised advantage estimation (Schulman et al. 2016, arXiv:1506.02438).

    δ_t = (r_t + γ (1 − d_t) V_{t+1} − V_t) · (1 − c_t)
    Â_t = δ_t + γ λ (1 − d_t)(1 − c_t) Â_{t+1}
  with d_t the termination and c_t the truncation flag of step t, V_T = bootstrap_value.
  A truncated step (time limit hit, next observation replaced by a reset) has no valid
  successor value, so it gets a zero advantage and target V_t, exactly as brax's
  `compute_gae`. Value targets are V_t + Â_t (the λ-returns).

  Args:
    rewards, values, terminations, truncations: [T, ...] (truncations may be None: none).
    bootstrap_value: [...], the value of the observation after the last step.
    discount: γ. gae_lambda: λ.
    differentiable: keep gradients w.r.t. rewards and values (used by the pathwise model
      gradient, where Â_t is a function of the model parameters).
  Returns:
    (advantages, value_targets), both [T, ...]; gradients stopped unless differentiable.
  """
  chex.assert_equal_shape([rewards, values, terminations])
  chex.assert_equal_shape([rewards[0], bootstrap_value])
  if truncations is None:
    truncations = jnp.zeros_like(rewards)
  keep = 1.0 - truncations
  not_term = 1.0 - terminations
  next_values = jnp.concatenate([values[1:], bootstrap_value[None]], axis=0)
  deltas = (rewards + discount * not_term * next_values - values) * keep

  def step(acc, xs):
    delta, cont = xs
    acc = delta + discount * gae_lambda * cont * acc
    return acc, acc

  _, advantages = jax.lax.scan(
      step, jnp.zeros_like(bootstrap_value), (deltas, not_term * keep), reverse=True)
  targets = values + advantages
  if differentiable:
    return advantages, targets
  return jax.lax.stop_gradient(advantages), jax.lax.stop_gradient(targets)


def ppo_policy_loss(log_prob: jax.Array, old_log_prob: jax.Array, advantages: jax.Array,
                    clip_eps: float) -> jax.Array:
  """PPO clipped surrogate (Schulman et al. 2017, arXiv:1707.06347), to be minimised.

    ρ = exp(log π_θ(a|s) − log π_old(a|s))
    L = −mean[min(ρ Â, clip(ρ, 1 − ε, 1 + ε) Â)]
  Args: log_prob, old_log_prob, advantages: [B]. clip_eps: ε.
  """
  chex.assert_equal_shape([log_prob, old_log_prob, advantages])
  ratio = jnp.exp(log_prob - old_log_prob)
  unclipped = ratio * advantages
  clipped = jnp.clip(ratio, 1.0 - clip_eps, 1.0 + clip_eps) * advantages
  return -jnp.mean(jnp.minimum(unclipped, clipped))


def value_loss(values: jax.Array, targets: jax.Array) -> jax.Array:
  """Squared-error value loss L = ½ mean[(V(s) − target)²]. values, targets: [B]."""
  chex.assert_equal_shape([values, targets])
  return 0.5 * jnp.mean(jnp.square(values - targets))


def gaussian_nll(mean: jax.Array, log_std: jax.Array, target: jax.Array) -> jax.Array:
  """Negative log density of a diagonal Gaussian, summed over the last axis.

    −log N(x; μ, σ²) = ½ Σ_i [((x_i − μ_i)/σ_i)² + 2 log σ_i + log 2π]
  Args: mean, log_std, target: [..., D]. Returns [...].
  """
  chex.assert_equal_shape([mean, log_std, target])
  z = (target - mean) * jnp.exp(-log_std)
  return 0.5 * jnp.sum(jnp.square(z) + 2.0 * log_std + _LOG_2PI, axis=-1)


def gaussian_entropy(log_std: jax.Array) -> jax.Array:
  """Entropy of a diagonal Gaussian, H = Σ_i (log σ_i + ½ log 2πe). log_std: [..., D] -> [...]."""
  return jnp.sum(log_std + 0.5 * (_LOG_2PI + 1.0), axis=-1)
