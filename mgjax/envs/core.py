"""The one place brax's `Env` and `State` are imported, and batched reset/step over them."""

import contextlib
import io

import jax
import jax.numpy as jnp

# MJX prints a notice on import when its optional Warp (GPU kernel) backend is absent; the
# MJX backend does not need it, and the notice would mix into the CLIs' output.
with contextlib.redirect_stdout(io.StringIO()):
  from brax import envs as brax_envs
  from brax.envs.base import Env, State, Wrapper

__all__ = ["Env", "State", "Wrapper", "brax_envs", "batched_reset", "batched_step", "where_done"]


def where_done(done: jax.Array, x: jax.Array, y: jax.Array) -> jax.Array:
  """done [B], x, y [B, ...] -> x where done else y."""
  return jnp.where(jnp.reshape(done, done.shape + (1,) * (x.ndim - 1)).astype(bool), x, y)


def batched_reset(env: Env, keys: jax.Array) -> State:
  """keys [B] -> batched env.reset."""
  # MJX broadcasts ranks implicitly; keep it working under jax_numpy_rank_promotion="raise".
  with jax.numpy_rank_promotion("allow"):
    return jax.vmap(env.reset)(keys)


def batched_step(env: Env, state: State, action: jax.Array, group: int = 0) -> State:
  """Batched env.step with done cleared first (envs that never terminate keep the old done).

  group > 0 steps the B envs `group` at a time, the B / group groups one after the other in
  a `lax.map`; each env's step is the same function, so the results equal one batch of B up
  to float rounding (XLA compiles a batch of `group` into other kernels). On a CPU, MJX
  costs more per env in a large batch than in a small one (RESULTS.md, "Why seeds do not
  scale linearly"), and a group keeps each step's batch small."""
  state = state.replace(done=jnp.zeros_like(state.done))
  batch = action.shape[0]
  with jax.numpy_rank_promotion("allow"):
    if group and group < batch:
      if batch % group:
        raise ValueError(f"group={group!r}: does not divide the {batch} envs")
      split = lambda x: x.reshape((batch // group, group) + x.shape[1:])
      state = jax.tree.map(
        lambda x: x.reshape((batch,) + x.shape[2:]),
        jax.lax.map(lambda sa: jax.vmap(env.step)(*sa), jax.tree.map(split, (state, action))),
      )
    else:
      state = jax.vmap(env.step)(state, action)
  return state.replace(
    reward=jnp.asarray(state.reward, jnp.float32), done=jnp.asarray(state.done, jnp.float32)
  )
