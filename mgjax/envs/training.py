"""Batched training envs with time limits and automatic resets, and policy evaluation.

`TrainingEnv` batches an env with a time limit and automatic resets in the style of brax's
`EpisodeWrapper` + `AutoResetWrapper` (`brax/envs/wrappers/training.py`), but keeps what a
model-based learner needs: the observation a step led to *before* the reset
(`info['final_obs']`) and terminations apart from truncations.
"""

import functools
from typing import Callable

import jax
import jax.numpy as jnp

from mgjax.envs.core import State, batched_reset, batched_step, where_done
from mgjax.envs.registry import EnvInfo


class TrainingEnv:
  """A batch of `num_envs` envs with a time limit and automatic resets.

  After `step`, `state.obs` is the observation to act on next (a reset observation where
  the episode ended), `state.reward` the step's reward and `state.done` 1.0 where the
  episode ended (terminal or time limit). `state.info` holds, all [num_envs]:
    final_obs [num_envs, obs_size]: the observation the step led to, before any reset.
    termination: 1.0 where the env reached a terminal state (regardless of the time limit).
    truncation: 1.0 where the time limit was hit and the env did not terminate.
    steps: steps into the current episode (0 right after a reset).
    episode_return, episode_length: running totals of the current episode.
    last_episode_return, last_episode_length: totals of the last finished episode (0 before).
    episodes_done: number of finished episodes.
  Done envs jump to cached reset states (as brax's AutoResetWrapper); `refresh_resets`
  draws new ones. `group` > 0 steps the envs that many at a time (`batched_step`). Methods
  are pure; jit the caller.
  """

  def __init__(self, info: EnvInfo, num_envs: int, group: int = 0):
    if num_envs < 1:
      raise ValueError(f"num_envs={num_envs!r}: must be a positive integer")
    if group < 0 or (group and num_envs % group):
      raise ValueError(f"group={group!r}: must be 0 or divide num_envs = {num_envs}")
    self.info = info
    self.num_envs = num_envs
    self.group = group  # envs stepped at once (`batched_step`); 0 = all

  def _reset_batch(self, key: jax.Array) -> State:
    return batched_reset(self.info.env, jax.random.split(key, self.num_envs))

  def reset(self, key: jax.Array) -> State:
    """key -> State batched over num_envs, with fresh episodes and cached reset states."""
    state = self._reset_batch(key)
    zeros = jnp.zeros((self.num_envs,), jnp.float32)
    izeros = jnp.zeros((self.num_envs,), jnp.int32)
    info = {
      **state.info,
      "first_pipeline_state": state.pipeline_state,
      "first_obs": state.obs,
      "final_obs": state.obs,
      "termination": zeros,
      "truncation": zeros,
      "steps": izeros,
      "episode_return": zeros,
      "episode_length": izeros,
      "last_episode_return": zeros,
      "last_episode_length": izeros,
      "episodes_done": izeros,
    }
    return state.replace(reward=zeros, done=zeros, info=info)

  def refresh_resets(self, state: State, key: jax.Array) -> State:
    """Replaces the cached reset states by freshly sampled ones; the current episodes go on."""
    fresh = self._reset_batch(key)
    return state.replace(
      info={**state.info, "first_pipeline_state": fresh.pipeline_state, "first_obs": fresh.obs}
    )

  def step(self, state: State, action: jax.Array) -> State:
    """action [num_envs, action_size] (in the env's action range) -> next State."""
    info = state.info
    nstate = batched_step(self.info.env, state, action, self.group)
    termination = nstate.done
    steps = info["steps"] + 1
    time_up = (steps >= self.info.episode_length).astype(jnp.float32)
    done = jnp.maximum(termination, time_up)
    episode_return = info["episode_return"] + nstate.reward
    episode_length = info["episode_length"] + 1
    ended = done > 0
    reset = functools.partial(where_done, done)
    new_info = {
      **nstate.info,
      "final_obs": nstate.obs,
      "termination": termination,
      "truncation": time_up * (1.0 - termination),
      "steps": jnp.where(ended, 0, steps),
      "episode_return": jnp.where(ended, 0.0, episode_return),
      "episode_length": jnp.where(ended, 0, episode_length),
      "last_episode_return": jnp.where(ended, episode_return, info["last_episode_return"]),
      "last_episode_length": jnp.where(ended, episode_length, info["last_episode_length"]),
      "episodes_done": info["episodes_done"] + ended.astype(jnp.int32),
    }
    return nstate.replace(
      pipeline_state=jax.tree.map(reset, info["first_pipeline_state"], nstate.pipeline_state),
      obs=reset(info["first_obs"], nstate.obs),
      done=done,
      info=new_info,
    )


def _episodes(
  info: EnvInfo,
  act_fn: Callable[..., jax.Array],
  key: jax.Array,
  num_envs: int,
  policy_key: jax.Array | None,
  record: bool,
):
  """num_envs fresh episodes -> (returns [num_envs], lengths [num_envs], and with `record`
  the states from the reset on [episode_length + 1, num_envs, ...], else None)."""
  env = info.env
  state = batched_reset(env, jax.random.split(key, num_envs))
  state = state.replace(
    reward=jnp.asarray(state.reward, jnp.float32), done=jnp.zeros((num_envs,), jnp.float32)
  )

  def body(carry, step_key):
    state, active, returns, lengths = carry
    action = act_fn(state.obs) if policy_key is None else act_fn(state.obs, step_key)
    nstate = batched_step(env, state, action)
    returns = returns + jnp.where(active, nstate.reward, 0.0)
    lengths = lengths + active.astype(jnp.int32)
    # Finished envs stay frozen in their final state (no NaNs from stepping past the end).
    state = jax.tree.map(lambda x, y: where_done(active, x, y), nstate, state)
    active = active & (nstate.done == 0)
    return (state, active, returns, lengths), (state if record else None)

  init = (
    state,
    jnp.ones((num_envs,), bool),
    jnp.zeros((num_envs,), jnp.float32),
    jnp.zeros((num_envs,), jnp.int32),
  )
  step_keys = None if policy_key is None else jax.random.split(policy_key, info.episode_length)
  (_, _, returns, lengths), states = jax.lax.scan(body, init, step_keys, length=info.episode_length)
  if record:
    states = jax.tree.map(lambda first, rest: jnp.concatenate([first[None], rest]), state, states)
  return returns, lengths, states


def evaluate(
  info: EnvInfo,
  act_fn: Callable[..., jax.Array],
  key: jax.Array,
  num_envs: int,
  policy_key: jax.Array | None = None,
) -> dict[str, jax.Array]:
  """Runs num_envs fresh episodes of at most info.episode_length steps; pure and jittable.

  Args:
    info: the environment.
    act_fn: obs [num_envs, obs_size] -> actions [num_envs, action_size] (in the env's
      action range); with policy_key, act_fn(obs, key) with a fresh key every step.
    key: randomness of the initial states.
    num_envs: number of episodes.
    policy_key: randomness of a stochastic policy (None: act_fn is deterministic).
  Returns:
    {"return": mean return, "returns": [num_envs], "length": mean episode length,
     "lengths": [num_envs]}; reward counts up to and including each env's first done.
  """
  returns, lengths, _ = _episodes(info, act_fn, key, num_envs, policy_key, record=False)
  return {
    "return": jnp.mean(returns),
    "returns": returns,
    "length": jnp.mean(lengths.astype(jnp.float32)),
    "lengths": lengths,
  }


def play_episode(
  info: EnvInfo,
  act_fn: Callable[..., jax.Array],
  key: jax.Array,
  policy_key: jax.Array | None = None,
):
  """One episode of at most info.episode_length steps, recorded; pure and jittable.

  act_fn, key and policy_key as in `evaluate` (with a batch of one observation): the
  episode is `evaluate`'s with num_envs=1.
  Returns:
    (states, length, return): the env's `State`s from the reset on, stacked on a leading
    axis of episode_length + 1 (those past the episode's end repeat its last state), the
    number of steps T before the first done (or the time limit), and the return of those
    steps.
  """
  returns, lengths, states = _episodes(info, act_fn, key, 1, policy_key, record=True)
  return jax.tree.map(lambda x: x[:, 0], states), lengths[0], returns[0]
