"""PPO (Schulman et al. 2017, arXiv:1707.06347) as an update step on a flat batch: the
Gaussian policy and value networks, the composed loss and the minibatch epochs.

Used on real data (`ppo`) and on model rollouts (`mg`, `mle`); `PPOBatch.weight` masks the
steps of a model rollout after its predicted termination.
"""

import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from mgjax import losses
from mgjax.checks import Part, layer_sizes, non_negative, one_of, positive, unit_interval
from mgjax.nets.networks import ACTION_MODES, Network, make_policy, make_value_fn
from mgjax.nets.normalization import RunningStats
from mgjax.optim import apply_gradients
from mgjax.types import Params, Policy


@dataclasses.dataclass(frozen=True)
class PPOConfig(Part):
  """PPO's settings and its networks' (on real data for ppo, on model rollouts for mg/mle)."""

  SECTION = "PPO"

  policy_hidden: tuple[int, ...] = (64, 64)
  value_hidden: tuple[int, ...] = (64, 64)
  action_mode: str = "clip"  # clip | tanh: how a Gaussian sample maps to [-1, 1]
  init_log_std: float = -0.5  # initial policy log-std
  discount: float = 0.99
  gae_lambda: float = 0.95
  clip_eps: float = 0.2
  ppo_epochs: int = 4
  num_minibatches: int = 4
  entropy_coef: float = 0.0
  value_coef: float = 0.5
  learning_rate: float = 3e-4  # policy and value
  max_grad_norm: float = 0.5

  def check(self) -> None:
    positive(self, ("ppo_epochs", "num_minibatches", "learning_rate", "clip_eps", "max_grad_norm"))
    unit_interval(self, ("discount", "gae_lambda"))
    non_negative(self, ("entropy_coef", "value_coef"))
    layer_sizes(self, ("policy_hidden", "value_hidden"))
    one_of(self, "action_mode", ACTION_MODES)


@dataclasses.dataclass(frozen=True)
class ModelPPOConfig(Part):
  """PPO in a learned model (mg, mle): the branched model rollouts of each policy update."""

  SECTION = "policy optimisation in the model"

  model_rollouts: int = 512  # branched rollouts per policy update, from buffer states
  model_horizon: int = 10  # their horizon
  model_updates: int = 4  # R: policy updates in the model per real iteration

  def check(self) -> None:
    positive(self, ("model_rollouts", "model_horizon", "model_updates"))


class PPONetworks(NamedTuple):
  """The policy network (apply -> (mean, log_std)) and the value network (apply -> V)."""

  policy: Network
  value: Network

  def make_policy(self, stats: RunningStats) -> Policy:
    return make_policy(self.policy, stats)

  def make_value_fn(self, stats: RunningStats):
    return make_value_fn(self.value, stats)


class PPOBatch(NamedTuple):
  """Flat samples for PPO epochs; `weight` masks steps after predicted termination."""

  obs: jax.Array
  action: jax.Array
  advantage: jax.Array
  target: jax.Array
  weight: jax.Array


class PPOCoefficients(NamedTuple):
  """The loss coefficients; data, so that vmapped runs can sweep them."""

  clip_eps: jax.Array
  value_coef: jax.Array
  entropy_coef: jax.Array


def ppo_loss(
  params: Params,
  mb: PPOBatch,
  old_log_prob: jax.Array,
  *,
  nets: PPONetworks,
  stats: RunningStats,
  coeffs: PPOCoefficients,
  obs_size: int,
):
  """Clipped surrogate + value_coef · value loss − entropy_coef · entropy, with advantages
  normalised over the (weighted) minibatch -> (loss, (policy loss, value loss, entropy))."""
  policy, value_fn = nets.make_policy(stats), nets.make_value_fn(stats)
  log_prob = jax.vmap(policy.log_prob, in_axes=(None, 0, 0))(params["policy"], mb.obs, mb.action)
  mean = losses.weighted_mean(mb.advantage, mb.weight)
  var = losses.weighted_mean(jnp.square(mb.advantage - mean), mb.weight)
  adv = (mb.advantage - mean) / (jnp.sqrt(var) + 1e-8)
  pl = losses.ppo_policy_loss(log_prob, old_log_prob, adv, coeffs.clip_eps, mb.weight)
  values = jax.vmap(value_fn, in_axes=(None, 0))(params["value"], mb.obs)
  vl = losses.value_loss(values, mb.target, mb.weight)
  _, log_std = nets.policy.apply(params["policy"], jnp.zeros(obs_size))
  entropy = losses.gaussian_entropy(log_std)  # state-independent log-std
  total = pl + coeffs.value_coef * vl - coeffs.entropy_coef * entropy
  return total, (pl, vl, entropy)


def ppo_update(
  params: Params,
  opt_state: optax.OptState,
  batch: PPOBatch,
  key: jax.Array,
  *,
  nets: PPONetworks,
  stats: RunningStats,
  optimizer: optax.GradientTransformation,
  coeffs: PPOCoefficients,
  epochs: int,
  num_minibatches: int,
  obs_size: int,
):
  """`epochs` passes over shuffled minibatches of `batch`; the behaviour log-probs are those
  of the current policy (the data is on-policy for it)
  -> (params, opt_state, (mean policy loss, mean value loss, mean entropy))."""
  policy = nets.make_policy(stats)
  # The behaviour policy's log-probs are fixed data for the ratio.
  old_log_prob = jax.lax.stop_gradient(
    jax.vmap(policy.log_prob, in_axes=(None, 0, 0))(params["policy"], batch.obs, batch.action)
  )
  n = batch.advantage.shape[0]
  loss_fn = functools.partial(ppo_loss, nets=nets, stats=stats, coeffs=coeffs, obs_size=obs_size)

  def minibatch_step(carry, idx):
    p, opt = carry
    mb = jax.tree.map(lambda x: x[idx], batch)
    grads, aux = jax.grad(loss_fn, has_aux=True)(p, mb, old_log_prob[idx])
    return apply_gradients(optimizer, p, opt, grads), aux

  def epoch(carry, k):
    idx = jax.random.permutation(k, n).reshape(num_minibatches, -1)
    return jax.lax.scan(minibatch_step, carry, idx)

  (params, opt_state), (pl, vl, ent) = jax.lax.scan(
    epoch, (params, opt_state), jax.random.split(key, epochs)
  )
  return params, opt_state, (pl.mean(), vl.mean(), ent.mean())
