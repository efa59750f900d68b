"""Core types: the pure, unbatched policy and model interfaces and the transition record."""

from typing import Any, Callable, Mapping, NamedTuple

import jax

Params = Any
PRNGKey = jax.Array


class Policy(NamedTuple):
  """A stochastic policy as two pure, unbatched functions.

  sample(params, obs, key) -> action
  log_prob(params, obs, action) -> scalar log π(action | obs)

  `action` is whatever `sample` returns (a float vector, an integer, ...); callers
  vmap over batches.
  """

  sample: Callable[[Params, jax.Array, PRNGKey], jax.Array]
  log_prob: Callable[[Params, jax.Array, jax.Array], jax.Array]


class Model(NamedTuple):
  """A stochastic dynamics-and-reward model as two pure, unbatched functions.

  sample(params, obs, action, key) -> (next_obs, reward, done)
  log_prob(params, obs, action, next_obs, reward) -> scalar log M(s', r | s, a)

  `done` must be a deterministic function of (obs, action, next_obs) (e.g. a known
  termination function of next_obs), so that log M covers the whole transition.
  """

  sample: Callable[[Params, jax.Array, jax.Array, PRNGKey], tuple[jax.Array, jax.Array, jax.Array]]
  log_prob: Callable[[Params, jax.Array, jax.Array, jax.Array, jax.Array], jax.Array]


class Transition(NamedTuple):
  """One environment step; leading axes are whatever the caller stacks ([T, B], [N], ...).

  `next_obs` is the observation the step led to, before any automatic reset.
  `termination` is 1 where the episode ended in a terminal state (no bootstrap),
  `truncation` is 1 where it was cut by the time limit (bootstrap would be needed).
  `extras` holds what the learner needs besides, e.g. {"log_prob": ..., "env_action": ...}.
  """

  obs: jax.Array
  action: jax.Array
  reward: jax.Array
  next_obs: jax.Array
  termination: jax.Array
  truncation: jax.Array
  extras: Mapping[str, jax.Array]
