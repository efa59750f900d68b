"""A fixed-size ring buffer of JAX arrays for transitions (pure functions, jittable).

Real and model buffers hold rows of one schema, `ROW_FIELDS`: a dict of
obs [D], action [A], reward [], next_obs [D] (before any reset) and termination [].
"""

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

ROW_FIELDS = ("obs", "action", "reward", "next_obs", "termination")


def rows(obs, action, reward, next_obs, termination) -> dict[str, jax.Array]:
  """Transition rows (any leading batch axes) in the buffers' schema."""
  return dict(zip(ROW_FIELDS, (obs, action, reward, next_obs, termination)))


def empty_row(obs_size: int, action_size: int) -> dict[str, jax.Array]:
  """One all-zero row, the example `buffer_init` shapes a buffer by."""
  zo, z = jnp.zeros(obs_size), jnp.zeros(())
  return rows(zo, jnp.zeros(action_size), z, zo, z)


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
  data = jax.tree.map(
    lambda x: jnp.zeros((capacity,) + jnp.shape(x), jnp.asarray(x).dtype), example
  )
  return ReplayBuffer(data, jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32))


def buffer_add(buffer: ReplayBuffer, batch: Any) -> ReplayBuffer:
  """Appends a batch [B, ...] (B <= capacity), overwriting the oldest rows."""
  capacity = buffer.capacity
  b = jax.tree.leaves(batch)[0].shape[0]
  if b > capacity:
    raise ValueError(f"batch of {b} rows does not fit a buffer of capacity {capacity}")
  idx = (buffer.position + jnp.arange(b)) % capacity
  data = jax.tree.map(lambda d, x: d.at[idx].set(x), buffer.data, batch)
  return ReplayBuffer(
    data, (buffer.position + b) % capacity, jnp.minimum(buffer.size + b, capacity)
  )


def buffer_sample(buffer: ReplayBuffer, key: jax.Array, batch_size: int) -> Any:
  """Uniform sample (with replacement) of batch_size valid rows."""
  idx = jax.random.randint(key, (batch_size,), 0, jnp.maximum(buffer.size, 1))
  return jax.tree.map(lambda d: d[idx], buffer.data)


def buffer_add_masked(buffer: ReplayBuffer, batch: Any, valid: jax.Array) -> ReplayBuffer:
  """Appends the rows of batch [B, ...] where valid [B] is true (a traced count), in order,
  overwriting the oldest rows; B <= capacity."""
  capacity = buffer.capacity
  b = jax.tree.leaves(batch)[0].shape[0]
  if b > capacity:
    raise ValueError(f"batch of {b} rows does not fit a buffer of capacity {capacity}")
  order = jnp.argsort(~valid, stable=True)  # valid rows first, keeping their order
  n = jnp.sum(valid.astype(jnp.int32))
  slots = jnp.arange(b)
  # Rows past the valid count get an out-of-range index, which mode="drop" ignores.
  idx = jnp.where(slots < n, (buffer.position + slots) % capacity, capacity)
  data = jax.tree.map(lambda d, x: d.at[idx].set(x[order], mode="drop"), buffer.data, batch)
  return ReplayBuffer(
    data, (buffer.position + n) % capacity, jnp.minimum(buffer.size + n, capacity)
  )


def buffer_sample_recent(
  buffer: ReplayBuffer, key: jax.Array, batch_size: int, window: jax.Array
) -> Any:
  """Uniform sample (with replacement) among the `window` most recently added rows."""
  n = jnp.maximum(jnp.minimum(buffer.size, window), 1)
  age = jax.random.randint(key, (batch_size,), 0, n)
  idx = (buffer.position - 1 - age) % buffer.capacity
  return jax.tree.map(lambda d: d[idx], buffer.data)
