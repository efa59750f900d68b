"""Observation normalisation by running statistics, passed to networks as data.

The policy, the value function and the model share one `RunningStats`; it enters every
network as an argument, so no parameter gradient ever flows into it.
"""

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class RunningStats:
  """Running mean/variance of observations (Chan et al. parallel update)."""

  mean: jax.Array
  var: jax.Array
  count: jax.Array


def init_stats(size: int) -> RunningStats:
  return RunningStats(jnp.zeros((size,)), jnp.ones((size,)), jnp.zeros(()))


def update_stats(stats: RunningStats, batch: jax.Array) -> RunningStats:
  """Merges a batch [..., D] into the statistics."""
  x = batch.reshape(-1, batch.shape[-1])
  n = jnp.asarray(x.shape[0], jnp.float32)
  b_mean, b_var = jnp.mean(x, 0), jnp.var(x, 0)
  total = stats.count + n
  delta = b_mean - stats.mean
  mean = stats.mean + delta * n / total
  m2 = stats.var * stats.count + b_var * n + jnp.square(delta) * stats.count * n / total
  return RunningStats(mean, m2 / total, total)


def std(stats: RunningStats) -> jax.Array:
  return jnp.sqrt(stats.var + 1e-8)


def normalize(stats: RunningStats, obs: jax.Array, clip: float = 10.0) -> jax.Array:
  """(obs − mean)/std, clipped; obs [..., D]."""
  mean, scale = jnp.broadcast_to(stats.mean, obs.shape), jnp.broadcast_to(std(stats), obs.shape)
  return jnp.clip((obs - mean) / scale, -clip, clip)
