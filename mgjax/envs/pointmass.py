"""A 2-D point mass: a fast pure-JAX brax `Env` for tests and quick experiments."""

import jax
import jax.numpy as jnp

from mgjax.envs.core import Env, State

EPISODE_LENGTH = 100


class PointMass(Env):
  """A 2-D point mass that must stay near the origin; fast pure-JAX brax `Env`.

  obs = [position (2), velocity (2)], action = acceleration, clipped to [-1, 1]^2.
    v' = v + dt · a,   p' = p + dt · v'                     (semi-implicit Euler)
    r  = 1 − 0.25 |p'|² − 0.01 |a|²                         (alive bonus, ≥ −0.02)
    terminal when |p'| > max_position
  Starts at p ~ U[-1, 1]^2, v ~ U[-0.5, 0.5]^2 (always recoverable: the stopping distance
  is at most 0.25). The observation is the whole state, so `pipeline_state` is None.
  Without control the point drifts out: zero and random actions terminate within a few
  tens of steps, a stabilising policy earns ≈ 0.9–1 per step for the whole episode.
  """

  def __init__(self, dt: float = 0.1, max_position: float = 2.0):
    self.dt = dt
    self.max_position = max_position

  def reset(self, rng: jax.Array) -> State:
    pkey, vkey = jax.random.split(rng)
    pos = jax.random.uniform(pkey, (2,), minval=-1.0, maxval=1.0)
    vel = jax.random.uniform(vkey, (2,), minval=-0.5, maxval=0.5)
    obs = jnp.concatenate([pos, vel])
    zero = jnp.zeros((), jnp.float32)
    return State(pipeline_state=None, obs=obs, reward=zero, done=zero)

  def step(self, state: State, action: jax.Array) -> State:
    action = jnp.clip(action, -1.0, 1.0)
    pos, vel = state.obs[:2], state.obs[2:]
    vel = vel + self.dt * action
    pos = pos + self.dt * vel
    obs = jnp.concatenate([pos, vel])
    reward = 1.0 - 0.25 * jnp.sum(pos**2) - 0.01 * jnp.sum(action**2)
    return state.replace(obs=obs, reward=reward, done=self.termination(obs))

  def termination(self, obs: jax.Array) -> jax.Array:
    """obs [4] -> 1.0 where |position| > max_position."""
    return (jnp.sum(obs[:2] ** 2) > self.max_position**2).astype(jnp.float32)

  @property
  def observation_size(self) -> int:
    return 4

  @property
  def action_size(self) -> int:
    return 2

  @property
  def backend(self) -> str:
    return "jax"
