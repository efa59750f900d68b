"""Pure losses shared by the algorithms: GAE, PPO surrogate and value losses, the diagonal
Gaussian's NLL, entropy and reparameterised sample.

All functions are pure and jittable. Time-major conventions follow brax
(`brax/training/agents/ppo/losses.py`): arrays are `[T, ...]` with any trailing batch axes.
Each checks the shapes of its inputs when it is traced (no run-time cost) and names the
argument at fault.
"""

import math

import chex
import jax
import jax.numpy as jnp

_LOG_2PI = math.log(2.0 * math.pi)


def gae(
  rewards: jax.Array,
  values: jax.Array,
  bootstrap_value: jax.Array,
  terminations: jax.Array,
  truncations: jax.Array | None = None,
  *,
  discount: float,
  gae_lambda: float,
  differentiable: bool = False,
) -> tuple[jax.Array, jax.Array]:
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
  _check_like(rewards, "rewards", values=values, terminations=terminations, truncations=truncations)
  chex.assert_equal_shape(
    [bootstrap_value, rewards[0]],
    custom_message=("bootstrap_value must be shaped like one step of rewards, [...]"),
  )
  if truncations is None:
    truncations = jnp.zeros_like(rewards)
  keep = 1.0 - truncations
  not_term = 1.0 - terminations
  next_values = jnp.concatenate([values[1:], bootstrap_value[None]], axis=0)
  deltas = (rewards + discount * not_term * next_values - values) * keep
  advantages = _discounted_cumsum(deltas, discount * gae_lambda * not_term * keep)
  return _targets(advantages, values, differentiable)


def gae_from_next_values(
  rewards: jax.Array,
  values: jax.Array,
  next_values: jax.Array,
  terminations: jax.Array,
  truncations: jax.Array,
  *,
  discount: float,
  gae_lambda: float,
) -> tuple[jax.Array, jax.Array]:
  """GAE when each step's own successor value V(s'_t) is known, also where the env was
  reset after a time limit (the pre-reset observation is kept), so truncated steps are
  bootstrapped properly instead of masked:

    δ_t = r_t + γ (1 − d_t) V(s'_t) − V(s_t)
    Â_t = δ_t + γ λ (1 − d_t)(1 − c_t) Â_{t+1}

  Args: all [T, ...]. Returns (advantages, value_targets), gradients stopped.
  """
  _check_like(
    rewards,
    "rewards",
    values=values,
    next_values=next_values,
    terminations=terminations,
    truncations=truncations,
  )
  not_term = 1.0 - terminations
  deltas = rewards + discount * not_term * next_values - values
  advantages = _discounted_cumsum(deltas, discount * gae_lambda * not_term * (1 - truncations))
  return _targets(advantages, values, differentiable=False)


def _check_like(x: jax.Array, name: str, **others: jax.Array | None) -> None:
  """Every array in `others` (None: absent) must be shaped like x; the error names it."""
  for other_name, other in others.items():
    if other is not None:
      chex.assert_equal_shape(
        [other, x], custom_message=(f"{other_name} must be shaped like {name}")
      )


def _check_has_last_axis(x: jax.Array, name: str) -> None:
  if jnp.ndim(x) < 1:
    raise ValueError(f"{name} must be [..., D], got shape {jnp.shape(x)}")


def _discounted_cumsum(x: jax.Array, factors: jax.Array) -> jax.Array:
  """y_t = x_t + factors_t · y_{t+1}, y_T = 0, by a reverse scan over axis 0."""

  def step(acc, xs):
    x_t, f_t = xs
    acc = x_t + f_t * acc
    return acc, acc

  _, y = jax.lax.scan(step, jnp.zeros_like(x[0]), (x, factors), reverse=True)
  return y


def _targets(advantages, values, differentiable):
  targets = values + advantages
  if differentiable:
    return advantages, targets
  return jax.lax.stop_gradient(advantages), jax.lax.stop_gradient(targets)


ADVANTAGE_TRANSFORMS = ("raw", "centred", "normalised")


def transform_advantages(
  advantages: jax.Array, transform: str, weights: jax.Array | None = None
) -> jax.Array:
  """The advantages a policy gradient is taken with:

    raw:        Â
    centred:    Â − μ
    normalised: (Â − μ) / (σ + 1e-8)     (PPO's convention, per batch)

  with μ = Σ w Â / Σ w and σ² = Σ w (Â − μ)² / Σ w over every entry (w = 1 where weights
  is None, e.g. the alive mask of model rollouts). Centring removes the baseline's error
  from the mean advantage; its expectation changes the policy gradient by O(1/B).
  Gradients flow through μ and σ as through Â (none where Â is data)."""
  if transform not in ADVANTAGE_TRANSFORMS:
    raise ValueError(f"transform={transform!r}: unknown; choose one of {ADVANTAGE_TRANSFORMS}")
  if transform == "raw":
    return advantages
  centred = advantages - weighted_mean(advantages, weights)
  if transform == "centred":
    return centred
  return centred / (jnp.sqrt(weighted_mean(jnp.square(centred), weights)) + 1e-8)


def weighted_mean(x: jax.Array, weights: jax.Array | None = None) -> jax.Array:
  """mean(x) or Σ w x / Σ w (e.g. w = alive mask of model rollouts)."""
  if weights is None:
    return jnp.mean(x)
  _check_like(x, "x", weights=weights)
  return jnp.sum(weights * x) / jnp.maximum(jnp.sum(weights), 1e-8)


def ppo_policy_loss(
  log_prob: jax.Array,
  old_log_prob: jax.Array,
  advantages: jax.Array,
  clip_eps: float,
  weights: jax.Array | None = None,
) -> jax.Array:
  """PPO clipped surrogate (Schulman et al. 2017, arXiv:1707.06347), to be minimised.

    ρ = exp(log π_θ(a|s) − log π_old(a|s))
    L = −mean_w[min(ρ Â, clip(ρ, 1 − ε, 1 + ε) Â)]
  Args: log_prob, old_log_prob, advantages, weights (optional, e.g. alive mask): [B].
    clip_eps: ε.
  """
  chex.assert_rank(log_prob, 1, custom_message="log_prob must be [B]")
  _check_like(
    log_prob, "log_prob", old_log_prob=old_log_prob, advantages=advantages, weights=weights
  )
  ratio = jnp.exp(log_prob - old_log_prob)
  unclipped = ratio * advantages
  clipped = jnp.clip(ratio, 1.0 - clip_eps, 1.0 + clip_eps) * advantages
  return -weighted_mean(jnp.minimum(unclipped, clipped), weights)


def value_loss(
  values: jax.Array, targets: jax.Array, weights: jax.Array | None = None
) -> jax.Array:
  """Squared-error value loss L = ½ mean_w[(V(s) − target)²]. values, targets, weights: [B]."""
  chex.assert_rank(values, 1, custom_message="values must be [B]")
  _check_like(values, "values", targets=targets, weights=weights)
  return 0.5 * weighted_mean(jnp.square(values - targets), weights)


def gaussian_nll(mean: jax.Array, log_std: jax.Array, target: jax.Array) -> jax.Array:
  """Negative log density of a diagonal Gaussian, summed over the last axis.

    −log N(x; μ, σ²) = ½ Σ_i [((x_i − μ_i)/σ_i)² + 2 log σ_i + log 2π]
  Args: mean, log_std, target: [..., D]. Returns [...].
  """
  _check_has_last_axis(mean, "mean")
  _check_like(mean, "mean", log_std=log_std, target=target)
  z = (target - mean) * jnp.exp(-log_std)
  return 0.5 * jnp.sum(jnp.square(z) + 2.0 * log_std + _LOG_2PI, axis=-1)


def gaussian_entropy(log_std: jax.Array) -> jax.Array:
  """Entropy of a diagonal Gaussian, H = Σ_i (log σ_i + ½ log 2πe). log_std: [..., D] -> [...]."""
  _check_has_last_axis(log_std, "log_std")
  return jnp.sum(log_std + 0.5 * (_LOG_2PI + 1.0), axis=-1)


def gaussian_sample(mean: jax.Array, log_std: jax.Array, key: jax.Array) -> jax.Array:
  """Reparameterised sample x = μ + σ ε, ε ~ N(0, I), of a diagonal Gaussian: differentiable
  in mean and log_std. mean, log_std: [..., D] -> [..., D]."""
  _check_like(mean, "mean", log_std=log_std)
  return mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape)
