"""Distractor dimensions: observation entries with dynamics of their own, independent of
the action, the reward and the termination (the "distractor" setting of VaGraM, Voelcker
et al., ICLR 2022, https://arxiv.org/abs/2204.01464, which used D = 5, 10, 15 on hopper).

A model fitted by maximum likelihood must spend capacity on them; a model fitted for the
decision (value- or gradient-aware) can ignore them.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np

from mgjax.envs.core import Env, State, Wrapper

GAIN = 1.5  # g > 1 (W's spectral radius ≈ g): the map does not contract to a fixed
# point; for D = 5, 10, 15 it keeps moving (tests/envs/test_distractors.py)
BIAS_SCALE = 0.1  # standard deviation of b
SEED = 0  # the fixed key of W and b: the same map for every run and reset
_RESET_SALT = 0x64697374  # folded into the reset key, apart from the env's own draws


def distractor_map(dims: int, seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
  """The fixed random map of `dims` distractors -> (W [dims, dims], b [dims]), float32.

  k_W, k_b = split(key(seed)),   W = g / √D · N(0, 1)[D, D] from k_W  (W_ij ~ N(0, g²/D)),
  b = 0.1 · N(0, 1)[D] from k_b,   g = GAIN = 1.5.
  """
  if dims < 1:
    raise ValueError(
      f"distractor_dims={dims!r}: must be positive (make_env takes 0 for no distractors)"
    )
  with jax.ensure_compile_time_eval():  # concrete constants even if built under a trace
    kw, kb = jax.random.split(jax.random.key(seed))
    w = GAIN / np.sqrt(dims) * jax.random.normal(kw, (dims, dims), jnp.float32)
    b = BIAS_SCALE * jax.random.normal(kb, (dims,), jnp.float32)
  return np.asarray(w), np.asarray(b)


def distractor_step(w: jax.Array, b: jax.Array, x: jax.Array) -> jax.Array:
  """One step of the distractor dynamics: x_{t+1} = tanh(W x_t + b), in [-1, 1]^D.

  Args:
    w: [D, D]. b: [D]. x: [D], the distractors x_t.
  Returns:
    x_{t+1} [D].
  """
  chex.assert_rank([w, b, x], [2, 1, 1])
  return jnp.tanh(w @ x + b)


def distractor_reset(key: jax.Array, dims: int) -> jax.Array:
  """x_0 ~ U[-1, 1]^D from a key folded from the env's reset key (independent of the env's
  own draws from it)."""
  return jax.random.uniform(
    jax.random.fold_in(key, _RESET_SALT), (dims,), jnp.float32, minval=-1.0, maxval=1.0
  )


class Distractors(Wrapper):
  """An unbatched brax `Env` with D distractor dimensions appended to its observation.

  obs = [env obs, x_t], x_0 ~ U[-1, 1]^D (`distractor_reset`), x_{t+1} = tanh(W x_t + b)
  (`distractor_step`, W and b from `distractor_map`). The distractors live in the last D
  observation entries; the wrapped env steps on the rest, so its reward, done, pipeline
  state and info are unchanged for the same keys and actions. Other attributes (`sys`,
  `dt`, ...) are the wrapped env's.
  """

  def __init__(self, env: Env, dims: int, seed: int = SEED):
    super().__init__(env)
    self.dims = dims
    self.w, self.b = distractor_map(dims, seed)

  def reset(self, rng: jax.Array) -> State:
    state = self.env.reset(rng)
    x = distractor_reset(rng, self.dims)
    return state.replace(obs=jnp.concatenate([state.obs, x.astype(state.obs.dtype)]))

  def step(self, state: State, action: jax.Array) -> State:
    obs, x = state.obs[: -self.dims], state.obs[-self.dims :]
    nstate = self.env.step(state.replace(obs=obs), action)
    x = distractor_step(self.w, self.b, x).astype(nstate.obs.dtype)
    return nstate.replace(obs=jnp.concatenate([nstate.obs, x]))

  @property
  def observation_size(self) -> int:
    return self.env.observation_size + self.dims
