"""The one place brax's `Env` and `State` are imported, and batched reset/step over them."""
import contextlib
import io

import jax
import jax.numpy as jnp

# MJX prints a notice on import when its optional Warp (GPU kernel) backend is absent; the
# MJX backend does not need it, and the notice would mix into the CLIs' output.
with contextlib.redirect_stdout(io.StringIO()):
  from brax import envs as brax_envs
  from brax.envs.base import Env, State

__all__ = ["Env", "State", "brax_envs", "batched_reset", "batched_step", "where_done"]


def where_done(done: jax.Array, x: jax.Array, y: jax.Array) -> jax.Array:
  """done [B], x, y [B, ...] -> x where done else y."""
  return jnp.where(jnp.reshape(done, done.shape + (1,) * (x.ndim - 1)).astype(bool), x, y)


def batched_reset(env: Env, keys: jax.Array) -> State:
  """keys [B] -> batched env.reset."""
  # MJX broadcasts ranks implicitly; keep it working under jax_numpy_rank_promotion="raise".
  with jax.numpy_rank_promotion("allow"):
    return jax.vmap(env.reset)(keys)


def batched_step(env: Env, state: State, action: jax.Array) -> State:
  """Batched env.step with done cleared first (envs that never terminate keep the old done)."""
  state = state.replace(done=jnp.zeros_like(state.done))
  with jax.numpy_rank_promotion("allow"):
    state = jax.vmap(env.step)(state, action)
  return state.replace(reward=jnp.asarray(state.reward, jnp.float32),
                       done=jnp.asarray(state.done, jnp.float32))
