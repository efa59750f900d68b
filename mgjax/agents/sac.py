"""Soft Actor-Critic (Haarnoja et al. 2018, "Soft Actor-Critic Algorithms and Applications",
arXiv:1812.05905) as small pure functions: tanh-Gaussian policy (also as an `mgjax.Policy`,
`tanh_gaussian_policy`), twin-critic, actor and temperature losses, Polyak averaging, and one
composed jittable update step.

Losses take plain unbatched functions, not `Network`s, so that callers can close over
observation normalisation or anything else:
  q_fn(q_params, obs, action) -> [num_q]          actor_fn(actor_params, obs) -> (mean, log_std)
Batched inputs carry a leading axis [B]; the losses vmap inside.
"""

import dataclasses
import functools
import math
from typing import Callable, NamedTuple

import chex
import jax
import jax.numpy as jnp
import optax
from flax import struct

from mgjax.checks import Part, layer_sizes, non_negative, one_of, positive, unit_interval
from mgjax.losses import gaussian_nll, gaussian_sample
from mgjax.nets.networks import Network
from mgjax.nets.sac_networks import (  # noqa: F401  (part of this module's API)
  ACTIVATIONS,
  LOG_STD_MAX,
  LOG_STD_MIN,
  STD_HEADS,
  make_actor_network,
  make_q_network,
  std_head_log_std,
)
from mgjax.optim import apply_gradients
from mgjax.types import Params, Policy, Transition

_LOG_2 = math.log(2.0)
_ACTION_EDGE = 1.0 - 1e-6  # |a| is clipped below 1 before arctanh, to keep u finite

QFn = Callable[[Params, jax.Array, jax.Array], jax.Array]
ActorFn = Callable[[Params, jax.Array], tuple[jax.Array, jax.Array]]


# --------------------------------------------------------------------------- settings
# MBPO's entropy target per env (Janner et al. 2019, appendix C).
TARGET_ENTROPY = {
  "hopper": -1.0,
  "walker2d": -3.0,
  "halfcheetah": -3.0,
  "ant": -4.0,
  "humanoid": -2.0,
}


@dataclasses.dataclass(frozen=True)
class SACConfig(Part):
  """SAC's settings (sac, and the SAC of mbpo and mg-sac); `for_env` sets MBPO's entropy
  target of an env."""

  SECTION = "SAC"

  sac_hidden: tuple[int, ...] = (256, 256)
  sac_activation: str = "relu"  # hidden activation of actor and critics: relu, silu
  sac_std_head: str = "bounded"  # the actor's σ: bounded (tanh into [e^-5, e^2]), softplus
  sac_q_out_scale: float = 1.0  # init scale of the critics' last layer; 0 starts Q at 0
  sac_learning_rate: float = 3e-4  # actor, critics and temperature
  sac_batch: int = 256  # SAC minibatch (real_ratio of it from real data)
  discount: float = 0.99
  tau: float = 0.005  # Polyak rate of the target critics
  target_entropy: float = 0.0  # SAC entropy target; 0 = -action_size
  updates_per_step: int = 20  # G: SAC updates per real env step
  exploration_steps: int = 5000  # initial uniform-random env steps before learning

  @classmethod
  def for_env(cls, env: str, **fields) -> "SACConfig":
    """SACConfig with MBPO's entropy target on `env` (where it has one), under `fields`."""
    return cls(
      **{**({"target_entropy": TARGET_ENTROPY[env]} if env in TARGET_ENTROPY else {}), **fields}
    )

  def check(self) -> None:
    positive(self, ("sac_batch", "updates_per_step", "sac_learning_rate"))
    non_negative(self, ("exploration_steps", "sac_q_out_scale"))
    one_of(self, "sac_activation", ACTIVATIONS)
    one_of(self, "sac_std_head", STD_HEADS)
    unit_interval(self, ("discount", "tau"))
    layer_sizes(self, ("sac_hidden",))


# --------------------------------------------------------------------------- tanh-Gaussian
def tanh_gaussian_log_prob(mean: jax.Array, log_std: jax.Array, u: jax.Array) -> jax.Array:
  """log π(a) of a = tanh(u), u ~ N(mean, σ²), by the change of variables:

    log π(a) = Σ_i [log N(u_i; μ_i, σ_i) − log(1 − tanh(u_i)²)],
    log(1 − tanh(u)²) = 2 (log 2 − u − softplus(−2u))   (finite for any u).
  Args: mean, log_std, u: [A]. Returns a scalar.
  """
  chex.assert_equal_shape([mean, log_std, u])
  log_det = 2.0 * (_LOG_2 - u - jax.nn.softplus(-2.0 * u))
  return -gaussian_nll(mean, log_std, u) - jnp.sum(log_det, axis=-1)


def tanh_gaussian_sample(
  mean: jax.Array, log_std: jax.Array, key: jax.Array
) -> tuple[jax.Array, jax.Array]:
  """Reparameterised a = tanh(μ + σ ε), ε ~ N(0, I); returns (a, log π(a)). Unbatched [A]."""
  u = gaussian_sample(mean, log_std, key)
  return jnp.tanh(u), tanh_gaussian_log_prob(mean, log_std, u)


def tanh_gaussian_policy(actor_fn: ActorFn) -> Policy:
  """The tanh-Gaussian actor as an `mgjax.Policy` over squashed actions a ∈ (−1, 1)^A:

    sample(params, obs, key)     = tanh(μ + σ ε), reparameterised (differentiable in obs and
                                   params, as the pathwise model gradient needs)
    log_prob(params, obs, action) = `tanh_gaussian_log_prob` at u = arctanh(a), |a| clipped to
                                   1 − 1e-6 so that u stays finite
  with (μ, log σ) = actor_fn(params, obs), unbatched.
  """

  def sample(params, obs, key):
    return tanh_gaussian_sample(*actor_fn(params, obs), key)[0]

  def log_prob(params, obs, action):
    u = jnp.arctanh(jnp.clip(action, -_ACTION_EDGE, _ACTION_EDGE))
    return tanh_gaussian_log_prob(*actor_fn(params, obs), u)

  return Policy(sample, log_prob)


def deterministic_action(mean: jax.Array) -> jax.Array:
  """The evaluation action tanh(μ)."""
  return jnp.tanh(mean)


def default_target_entropy(action_size: int) -> float:
  """The usual heuristic target entropy H̄ = −dim(A) (Haarnoja et al. 2018)."""
  return -float(action_size)


def sample_actions(
  actor_fn: ActorFn, actor_params: Params, obs: jax.Array, key: jax.Array
) -> tuple[jax.Array, jax.Array]:
  """a_b ~ π(·|obs_b), tanh-Gaussian, with keys jax.random.split(key, B)
  -> (a [B, A], log π(a_b|obs_b) [B]). obs: [B, D]."""
  mean, log_std = jax.vmap(actor_fn, in_axes=(None, 0))(actor_params, obs)
  return jax.vmap(tanh_gaussian_sample)(mean, log_std, jax.random.split(key, obs.shape[0]))


# --------------------------------------------------------------------------- losses
def critic_loss(
  q_params: Params,
  *,
  target_q_params: Params,
  actor_params: Params,
  log_alpha: jax.Array,
  batch: Transition,
  key: jax.Array,
  q_fn: QFn,
  actor_fn: ActorFn,
  discount: float,
) -> tuple[jax.Array, dict]:
  """Soft Bellman residual of num_q critics against a clipped double-Q target:

    a' ~ π(·|s'),  α = exp(log_alpha)
    y = r + γ (1 − d) (min_j Q̄_j(s', a') − α log π(a'|s'))
    L = ½ mean_b Σ_j (Q_j(s, a) − y)²
  with d the termination flag. Truncated steps bootstrap normally: next_obs is the true
  final observation, only termination stops the bootstrap. Next actions use keys
  jax.random.split(key, B).

  Args: batch fields obs, next_obs [B, D]; action [B, A]; reward, termination [B].
  Returns (loss, {"q_mean", "target_q_mean"}).
  """
  chex.assert_rank([batch.reward, batch.termination], 1)
  chex.assert_equal_shape([batch.reward, batch.termination])
  next_action, next_log_prob = sample_actions(actor_fn, actor_params, batch.next_obs, key)
  next_q = jax.vmap(q_fn, in_axes=(None, 0, 0))(target_q_params, batch.next_obs, next_action)
  alpha = jnp.exp(log_alpha)
  soft_value = jnp.min(next_q, axis=-1) - alpha * next_log_prob
  target = batch.reward + discount * (1.0 - batch.termination) * soft_value
  # The target is a fixed regression label: no gradient into target critics, actor or α.
  target = jax.lax.stop_gradient(target)
  q = jax.vmap(q_fn, in_axes=(None, 0, 0))(q_params, batch.obs, batch.action)  # [B, num_q]
  loss = 0.5 * jnp.mean(jnp.sum(jnp.square(q - target[:, None]), axis=-1))
  return loss, {"q_mean": jnp.mean(q), "target_q_mean": jnp.mean(target)}


def actor_objective(
  actor_params: Params,
  obs: jax.Array,
  key: jax.Array,
  *,
  q_params: Params,
  log_alpha: jax.Array,
  q_fn: QFn,
  actor_fn: ActorFn,
) -> jax.Array:
  """One state's policy objective  ℓ(θ, s, key) = α log π(a|s) − min_j Q_j(s, a),
  a = tanh(μ(s) + σ(s) ε) reparameterised by key, α = exp(log_alpha) held constant.
  Unbatched: obs [D] -> a scalar.

  `actor_loss` is its batch mean. Bound with functools.partial to the critics and α, it is
  the per-state loss `mgjax.actor_gradient` and `mgjax.actor_model_gradient_loss` take as
  `actor_loss` (mg-sac).
  """
  return _objective_and_log_prob(
    actor_params, obs, key, q_params=q_params, log_alpha=log_alpha, q_fn=q_fn, actor_fn=actor_fn
  )[0]


def _objective_and_log_prob(actor_params, obs, key, *, q_params, log_alpha, q_fn, actor_fn):
  """(`actor_objective`, the log π(a|s) of its action)."""
  mean, log_std = actor_fn(actor_params, obs)
  action, log_prob = tanh_gaussian_sample(mean, log_std, key)
  # α is the temperature's own business (alpha_loss); here it is a constant.
  alpha = jax.lax.stop_gradient(jnp.exp(log_alpha))
  return alpha * log_prob - jnp.min(q_fn(q_params, obs, action)), log_prob


def actor_loss(
  actor_params: Params,
  *,
  q_params: Params,
  log_alpha: jax.Array,
  obs: jax.Array,
  key: jax.Array,
  q_fn: QFn,
  actor_fn: ActorFn,
) -> tuple[jax.Array, dict]:
  """Reparameterised policy loss  L = mean_b [α log π(a_b|s_b) − min_j Q_j(s_b, a_b)],
  a_b = tanh(μ(s_b) + σ(s_b) ε_b) with keys jax.random.split(key, B), α = exp(log_alpha).

  Args: obs [B, D]. Returns (loss, {"entropy": −mean log π, "log_prob": mean log π}).
  Gradients reach Q's parameters only if a caller differentiates w.r.t. q_params.
  """
  chex.assert_rank(obs, 2)
  objective = functools.partial(
    _objective_and_log_prob, q_params=q_params, log_alpha=log_alpha, q_fn=q_fn, actor_fn=actor_fn
  )
  values, log_prob = jax.vmap(objective, in_axes=(None, 0, 0))(
    actor_params, obs, jax.random.split(key, obs.shape[0])
  )
  mean_log_prob = jnp.mean(log_prob)
  return jnp.mean(values), {"entropy": -mean_log_prob, "log_prob": mean_log_prob}


def alpha_loss(
  log_alpha: jax.Array, *, log_prob: jax.Array, target_entropy: float
) -> tuple[jax.Array, dict]:
  """Temperature loss  L = −α · mean(log π + H̄),  α = exp(log_alpha).

  ∂L/∂log α = −α mean(log π + H̄) < 0 when the entropy −mean log π is below the target H̄,
  so gradient descent raises α (and lowers it when the entropy exceeds H̄).
  Args: log_prob: log π of policy samples, any shape (a scalar mean will do).
  """
  # The policy's log-probs are data here: no gradient into the actor.
  gap = jnp.mean(jax.lax.stop_gradient(log_prob + target_entropy))
  alpha = jnp.exp(log_alpha)
  return -alpha * gap, {"alpha": alpha}


def polyak_update(target: Params, online: Params, tau: float) -> Params:
  """θ̄ ← τ θ + (1 − τ) θ̄, leaf by leaf."""
  return jax.tree.map(lambda t, o: tau * o + (1.0 - tau) * t, target, online)


# --------------------------------------------------------------------------- composed step
@struct.dataclass
class SACParams:
  actor: Params
  q: Params
  target_q: Params
  log_alpha: jax.Array


@struct.dataclass
class SACOptState:
  actor: optax.OptState
  q: optax.OptState
  alpha: optax.OptState


class SACOptimizers(NamedTuple):
  actor: optax.GradientTransformation
  q: optax.GradientTransformation
  alpha: optax.GradientTransformation


def make_optimizers(learning_rate: float = 3e-4) -> SACOptimizers:
  return SACOptimizers(
    optax.adam(learning_rate), optax.adam(learning_rate), optax.adam(learning_rate)
  )


def init_params(
  actor_net: Network, q_net: Network, key: jax.Array, init_alpha: float = 1.0
) -> SACParams:
  """Fresh parameters; the target critics start as a copy of the critics."""
  actor_key, q_key = jax.random.split(key)
  q = q_net.init(q_key)
  return SACParams(
    actor=actor_net.init(actor_key),
    q=q,
    target_q=jax.tree.map(jnp.copy, q),
    log_alpha=jnp.log(jnp.asarray(init_alpha, jnp.float32)),
  )


def init_opt_state(opts: SACOptimizers, params: SACParams) -> SACOptState:
  return SACOptState(
    actor=opts.actor.init(params.actor),
    q=opts.q.init(params.q),
    alpha=opts.alpha.init(params.log_alpha),
  )


def sac_update(
  params: SACParams,
  opt_state: SACOptState,
  batch: Transition,
  key: jax.Array,
  *,
  q_fn: QFn,
  actor_fn: ActorFn,
  optimizers: SACOptimizers,
  discount: float = 0.99,
  tau: float = 0.005,
  target_entropy: float,
) -> tuple[SACParams, SACOptState, dict]:
  """One SAC step on a batch [B]:
    1. critic: one gradient step on critic_loss (current actor, α and target critics);
    2. actor: one gradient step on actor_loss against the *updated* critics;
    3. α: one gradient step on alpha_loss with the mean log π of the actor step's samples
       (drawn from the actor before its update);
    4. target critics: Polyak averaging towards the updated critics with rate τ.
  Pure and free of Python control flow on traced values (jit/vmap/scan friendly).
  Metrics: critic_loss, actor_loss, alpha_loss, alpha (after the step), entropy, q_mean.
  """
  critic_key, actor_key = jax.random.split(key)
  (c_loss, c_metrics), q_grads = jax.value_and_grad(critic_loss, has_aux=True)(
    params.q,
    target_q_params=params.target_q,
    actor_params=params.actor,
    log_alpha=params.log_alpha,
    batch=batch,
    key=critic_key,
    q_fn=q_fn,
    actor_fn=actor_fn,
    discount=discount,
  )
  q, q_state = apply_gradients(optimizers.q, params.q, opt_state.q, q_grads)

  (a_loss, a_metrics), actor_grads = jax.value_and_grad(actor_loss, has_aux=True)(
    params.actor,
    q_params=q,
    log_alpha=params.log_alpha,
    obs=batch.obs,
    key=actor_key,
    q_fn=q_fn,
    actor_fn=actor_fn,
  )
  actor, actor_state = apply_gradients(optimizers.actor, params.actor, opt_state.actor, actor_grads)

  (t_loss, _), alpha_grad = jax.value_and_grad(alpha_loss, has_aux=True)(
    params.log_alpha, log_prob=a_metrics["log_prob"], target_entropy=target_entropy
  )
  log_alpha, alpha_state = apply_gradients(
    optimizers.alpha, params.log_alpha, opt_state.alpha, alpha_grad
  )

  new_params = SACParams(
    actor=actor, q=q, target_q=polyak_update(params.target_q, q, tau), log_alpha=log_alpha
  )
  metrics = {
    "critic_loss": c_loss,
    "actor_loss": a_loss,
    "alpha_loss": t_loss,
    "alpha": jnp.exp(log_alpha),
    "entropy": a_metrics["entropy"],
    "q_mean": c_metrics["q_mean"],
  }
  return new_params, SACOptState(actor=actor_state, q=q_state, alpha=alpha_state), metrics
