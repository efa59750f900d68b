"""SAC's networks (`mgjax.agents.sac`): the tanh-Gaussian actor, whose σ is either smoothly
bounded into [exp LOG_STD_MIN, exp LOG_STD_MAX] or a softplus, and num_q independent critics.
The hidden activation is one of ACTIVATIONS."""

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from mgjax.nets.networks import MLP, Network

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0
SOFTPLUS_STD_MIN = 1e-5
ACTIVATIONS = {"relu": nn.relu, "silu": nn.silu}
STD_HEADS = ("bounded", "softplus")


def std_head_log_std(raw: jax.Array, head: str) -> jax.Array:
  """log σ from the actor's raw output x:

  bounded:  log σ = LOG_STD_MIN + ½ (LOG_STD_MAX − LOG_STD_MIN)(tanh(x) + 1)
  softplus: σ = softplus(x) + SOFTPLUS_STD_MIN   (σ ≈ 0.69 at x = 0)
  """
  if head == "bounded":
    return LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (jnp.tanh(raw) + 1.0)
  if head == "softplus":
    return jnp.log(jax.nn.softplus(raw) + SOFTPLUS_STD_MIN)
  raise ValueError(f"std head {head!r}: choose one of {', '.join(STD_HEADS)}")


class _TanhGaussianActor(nn.Module):
  """Pre-tanh Gaussian with state-dependent σ (`std_head_log_std`)."""

  hidden: Sequence[int]
  action_size: int
  activation: str = "relu"
  std_head: str = "bounded"

  @nn.compact
  def __call__(self, obs):
    out = MLP(self.hidden, 2 * self.action_size, ACTIVATIONS[self.activation])(obs)
    mean, raw = jnp.split(out, 2, axis=-1)
    return mean, std_head_log_std(raw, self.std_head)


def make_actor_network(
  obs_size: int,
  action_size: int,
  hidden: Sequence[int] = (256, 256),
  activation: str = "relu",
  std_head: str = "bounded",
) -> Network:
  """Actor: apply(params, obs) -> (mean, log_std), both [action_size], of the pre-tanh u."""
  module = _TanhGaussianActor(tuple(hidden), action_size, activation, std_head)
  return Network(lambda key: module.init(key, jnp.zeros((obs_size,))), module.apply)


def make_q_network(
  obs_size: int,
  action_size: int,
  hidden: Sequence[int] = (256, 256),
  num_q: int = 2,
  activation: str = "relu",
  out_scale: float = 1.0,
) -> Network:
  """num_q independent critics: apply(params, obs, action) -> [num_q].

  Params carry a leading [num_q] axis (one init key per critic). `out_scale` scales the
  standard deviation of the last layer's initial weights; 0 starts every Q at 0."""
  module = MLP(tuple(hidden), 1, ACTIVATIONS[activation], final_scale=out_scale)
  dummy = jnp.zeros((obs_size + action_size,))

  def init(key):
    return jax.vmap(lambda k: module.init(k, dummy))(jax.random.split(key, num_q))

  def apply(params, obs, action):
    x = jnp.concatenate([obs, action], axis=-1)
    return jax.vmap(module.apply, in_axes=(0, None))(params, x)[..., 0]

  return Network(init, apply)
