"""A fixed-size ring buffer of JAX arrays for real transitions (pure functions, jittable)."""
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class ReplayBuffer:
  """data: pytree of arrays [capacity, ...]; insert position and number of valid rows."""
  data: Any
  position: jax.Array
  size: jax.Array

  @property
  def capacity(self) -> int:
    return jax.tree.leaves(self.data)[0].shape[0]


def buffer_init(example: Any, capacity: int) -> ReplayBuffer:
  """An empty buffer whose rows look like `example` (one unbatched item)."""
  data = jax.tree.map(lambda x: jnp.zeros((capacity,) + jnp.shape(x), jnp.asarray(x).dtype),
                      example)
  return ReplayBuffer(data, jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32))


def buffer_add(buffer: ReplayBuffer, batch: Any) -> ReplayBuffer:
  """Appends a batch [B, ...] (B <= capacity), overwriting the oldest rows."""
  capacity = buffer.capacity
  b = jax.tree.leaves(batch)[0].shape[0]
  if b > capacity:
    raise ValueError(f"batch of {b} rows does not fit a buffer of capacity {capacity}")
  idx = (buffer.position + jnp.arange(b)) % capacity
  data = jax.tree.map(lambda d, x: d.at[idx].set(x), buffer.data, batch)
  return ReplayBuffer(data, (buffer.position + b) % capacity,
                      jnp.minimum(buffer.size + b, capacity))


def buffer_sample(buffer: ReplayBuffer, key: jax.Array, batch_size: int) -> Any:
  """Uniform sample (with replacement) of batch_size valid rows."""
  idx = jax.random.randint(key, (batch_size,), 0, jnp.maximum(buffer.size, 1))
  return jax.tree.map(lambda d: d[idx], buffer.data)
