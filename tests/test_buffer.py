"""Tests for mgjax.buffer: the ring buffer (add, masked add, uniform and recent sampling) and
the one row schema shared by the real and model buffers.

Hand-computed cases carry their arithmetic in comments; every function runs under `jax.jit`.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mgjax import buffer
from mgjax.buffer import buffer_add_masked, buffer_init, buffer_sample_recent


def index_rows(start, n):
  """n rows whose entries encode their index: x = [i, −i], y = i."""
  i = jnp.arange(start, start + n, dtype=jnp.float32)
  return {"x": jnp.stack([i, -i], axis=-1), "y": i}


# ------------------------------------------------------------------------- add and sample
def test_buffer_add_wraps_around_and_caps_size():
  buf = buffer.buffer_init({"x": jnp.zeros(2), "y": jnp.zeros(())}, capacity=5)
  assert buf.capacity == 5 and buf.data["x"].shape == (5, 2) and int(buf.size) == 0
  add = jax.jit(buffer.buffer_add)

  buf = add(buf, index_rows(0, 3))  # rows 0, 1, 2 at slots 0, 1, 2
  assert (int(buf.position), int(buf.size)) == (3, 3)
  buf = add(buf, index_rows(3, 4))  # rows 3, 4 at slots 3, 4; rows 5, 6 overwrite the oldest 0, 1
  # position = (3 + 4) mod 5 = 2, size = min(3 + 4, 5) = 5
  assert (int(buf.position), int(buf.size)) == (2, 5)
  np.testing.assert_array_equal(buf.data["y"], [5.0, 6.0, 2.0, 3.0, 4.0])
  np.testing.assert_array_equal(buf.data["x"][:, 1], [-5.0, -6.0, -2.0, -3.0, -4.0])
  buf = add(buf, index_rows(7, 5))  # a full batch replaces everything, starting at slot 2
  np.testing.assert_array_equal(buf.data["y"], [10.0, 11.0, 7.0, 8.0, 9.0])
  assert (int(buf.position), int(buf.size)) == (2, 5)

  with pytest.raises(ValueError, match="6 rows"):
    buffer.buffer_add(buf, index_rows(0, 6))


def test_buffer_sample_returns_only_valid_rows():
  buf = buffer.buffer_init({"x": jnp.zeros(2), "y": jnp.zeros(())}, capacity=10)
  buf = jax.jit(buffer.buffer_add)(buf, index_rows(1, 3))  # slots 0..2 hold rows 1, 2, 3
  sample = jax.jit(buffer.buffer_sample, static_argnums=2)(buf, jax.random.key(4), 500)
  assert sample["x"].shape == (500, 2) and sample["y"].shape == (500,)
  # Never the zero rows of the unfilled slots 3..9; each valid row drawn ≈ 500/3 times.
  np.testing.assert_array_equal(np.unique(sample["y"]), [1.0, 2.0, 3.0])
  np.testing.assert_array_equal(sample["x"][:, 0], sample["y"])  # rows stay whole


# ------------------------------------------------------------ masked add and recent sample
def test_buffer_add_masked_appends_valid_rows_in_order_and_wraps():
  buf = buffer_init({"x": jnp.zeros(())}, 5)
  add = jax.jit(buffer_add_masked)
  buf = add(buf, {"x": jnp.array([1.0, 2.0, 3.0, 4.0])}, jnp.array([True, False, True, True]))
  assert np.asarray(buf.data["x"]).tolist() == [1, 3, 4, 0, 0]
  assert int(buf.size) == 3 and int(buf.position) == 3
  # 3 valid rows more: slots 3, 4, then 0 (the oldest) is overwritten.
  buf = add(buf, {"x": jnp.array([5.0, 6.0, 7.0, 8.0])}, jnp.array([False, True, True, True]))
  assert np.asarray(buf.data["x"]).tolist() == [8, 3, 4, 6, 7]
  assert int(buf.size) == 5 and int(buf.position) == 1
  buf = add(buf, {"x": jnp.array([9.0, 9.0, 9.0, 9.0])}, jnp.zeros(4, bool))
  assert np.asarray(buf.data["x"]).tolist() == [8, 3, 4, 6, 7] and int(buf.position) == 1


def test_buffer_sample_recent_draws_only_the_newest_rows():
  buf = buffer_init({"x": jnp.zeros(())}, 8)
  buf = buffer_add_masked(buf, {"x": jnp.arange(1.0, 11.0)[:8]}, jnp.ones(8, bool))
  buf = buffer_add_masked(buf, {"x": jnp.array([9.0, 10.0, 0.0])}, jnp.array([True, True, False]))
  # Rows added last: 10, 9, 8 (the window of 3).
  x = np.asarray(buffer_sample_recent(buf, jax.random.key(0), 500, jnp.array(3))["x"])
  assert set(x.tolist()) == {8.0, 9.0, 10.0}
  x = np.asarray(buffer_sample_recent(buf, jax.random.key(0), 2000, jnp.array(100))["x"])
  assert set(x.tolist()) == {3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0}  # window > size


# ------------------------------------------------------------------------------ row schema
def test_rows_and_empty_row_share_one_schema():
  assert buffer.ROW_FIELDS == ("obs", "action", "reward", "next_obs", "termination")
  example = buffer.empty_row(obs_size=4, action_size=2)
  assert tuple(example) == buffer.ROW_FIELDS
  shapes = {k: v.shape for k, v in example.items()}
  assert shapes == {"obs": (4,), "action": (2,), "reward": (), "next_obs": (4,), "termination": ()}
  for v in example.values():
    assert v.dtype == jnp.float32
    np.testing.assert_array_equal(v, 0.0)

  # rows(...) names its positional arguments by the schema, whatever the leading axes.
  n = 3
  obs = jnp.arange(n * 4, dtype=jnp.float32).reshape(n, 4)
  action = -jnp.ones((n, 2))
  reward = jnp.array([0.5, 1.5, 2.5])
  termination = jnp.array([0.0, 1.0, 0.0])
  batch = buffer.rows(obs, action, reward, obs + 100.0, termination)
  assert tuple(batch) == buffer.ROW_FIELDS
  assert jax.tree.structure(batch) == jax.tree.structure(example)
  np.testing.assert_array_equal(batch["next_obs"], obs + 100.0)
  np.testing.assert_array_equal(batch["termination"], termination)

  # A buffer shaped by empty_row takes such rows, and gives them back whole.
  buf = jax.jit(buffer.buffer_add)(buffer.buffer_init(example, capacity=5), batch)
  assert int(buf.size) == 3 and buf.data["obs"].shape == (5, 4)
  np.testing.assert_array_equal(buf.data["reward"], [0.5, 1.5, 2.5, 0.0, 0.0])
  sample = jax.jit(buffer.buffer_sample, static_argnums=2)(buf, jax.random.key(1), 64)
  # obs row i is [4i, 4i + 1, 4i + 2, 4i + 3] and reward i is i + 0.5: every field of a drawn
  # row comes from the same transition.
  i = sample["obs"][:, 0] / 4.0
  np.testing.assert_array_equal(sample["reward"], i + 0.5)
  np.testing.assert_array_equal(sample["next_obs"], sample["obs"] + 100.0)
  np.testing.assert_array_equal(sample["termination"], (i == 1.0).astype(jnp.float32))
