"""SAC's networks (`mgjax.agents.sac`): the tanh-Gaussian actor, whose log-std is smoothly
bounded into [LOG_STD_MIN, LOG_STD_MAX], and num_q independent critics."""

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from mgjax.nets.networks import MLP, Network

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0


class _TanhGaussianActor(nn.Module):
  """Pre-tanh Gaussian with state-dependent log-std, smoothly bounded into
  [LOG_STD_MIN, LOG_STD_MAX] by log σ = min + ½ (max − min)(tanh(x) + 1)."""

  hidden: Sequence[int]
  action_size: int

  @nn.compact
  def __call__(self, obs):
    out = MLP(self.hidden, 2 * self.action_size, nn.relu)(obs)
    mean, raw = jnp.split(out, 2, axis=-1)
    log_std = LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (jnp.tanh(raw) + 1.0)
    return mean, log_std


def make_actor_network(
  obs_size: int, action_size: int, hidden: Sequence[int] = (256, 256)
) -> Network:
  """Actor: apply(params, obs) -> (mean, log_std), both [action_size], of the pre-tanh u."""
  module = _TanhGaussianActor(tuple(hidden), action_size)
  return Network(lambda key: module.init(key, jnp.zeros((obs_size,))), module.apply)


def make_q_network(
  obs_size: int, action_size: int, hidden: Sequence[int] = (256, 256), num_q: int = 2
) -> Network:
  """num_q independent critics: apply(params, obs, action) -> [num_q].

  Params carry a leading [num_q] axis (one init key per critic)."""
  module = MLP(tuple(hidden), 1, nn.relu)
  dummy = jnp.zeros((obs_size + action_size,))

  def init(key):
    return jax.vmap(lambda k: module.init(k, dummy))(jax.random.split(key, num_q))

  def apply(params, obs, action):
    x = jnp.concatenate([obs, action], axis=-1)
    return jax.vmap(module.apply, in_axes=(0, None))(params, x)[..., 0]

  return Network(init, apply)
