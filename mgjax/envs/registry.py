"""Environments by name: brax envs (MJX by default) and the pure-JAX point mass.

Every environment comes as an `EnvInfo` with a known termination function of the next
observation, which model rollouts use to stop where the real environment would have
(`termination_fn(next_obs)`, unbatched; callers vmap).
"""

import dataclasses
import functools
import numbers
from typing import Any, Callable, NamedTuple

import jax

from mgjax.envs import distractors, pointmass, terminations
from mgjax.envs.core import Env, batched_reset, brax_envs

ENV_NAMES = (
  "hopper",
  "walker2d",
  "halfcheetah",
  "ant",
  "humanoid",
  "inverted_pendulum",
  "inverted_double_pendulum",
  "reacher",
  "swimmer",
  "pusher",
  "pointmass",
)
BACKENDS = ("mjx", "generalized", "spring", "positional")
_BRAX_EPISODE_LENGTH = 1000  # brax's customary time limit for all of its envs.


class EnvEntry(NamedTuple):
  """An environment registered with `register_env`."""

  make: Callable[..., Env]  # make(backend=...) -> the unbatched env
  termination_fn: Callable[[jax.Array], jax.Array]  # next_obs -> 1.0 where done
  episode_length: int
  presets: dict[str, dict[str, Any]]  # algorithm name -> Config fields on this env


REGISTERED: dict[str, EnvEntry] = {}


def register_env(
  name: str,
  make: Callable[..., Env],
  termination_fn: Callable[[jax.Array], jax.Array] | None = None,
  *,
  episode_length: int = _BRAX_EPISODE_LENGTH,
  presets: dict[str, dict[str, Any]] | None = None,
  replace: bool = False,
) -> str:
  """Makes `make_env(name)` (and so `Config(env=name)` and `--env name`) build this env.

  Args:
    name: the env's name; mgjax's own and brax's names are refused, as is one registered
      already unless `replace`.
    make: make(backend=...) -> an unbatched brax-style `Env` (reset(key) and step(state,
      action) returning states with obs, reward, done, info; actions in [-1, 1]); the backend
      is the config's, for an env that has several.
    termination_fn: next_obs [obs_size] -> float32 1.0 where the env ends the episode at a
      terminal state (never for the time limit), which model rollouts use; None: it never
      terminates.
    episode_length: its default time limit.
    presets: {algorithm name: Config fields} that algorithm uses by default on this env,
      laid over the algorithm's own preset (`mgjax.algorithms.preset`).
  Returns:
    name.
  Raises:
    ValueError: a name that is taken, or episode_length not a positive integer.
  """
  if name in ENV_NAMES or name in _brax_names():
    raise ValueError(f"name={name!r}: an env of mgjax or brax; choose another name")
  if name in REGISTERED and not replace:
    raise ValueError(f"name={name!r}: registered already; choose another name, or replace=True")
  if not isinstance(episode_length, numbers.Integral) or episode_length < 1:
    raise ValueError(f"episode_length={episode_length!r}: must be a positive integer")
  done = termination_fn or terminations.never
  REGISTERED[name] = EnvEntry(make, done, int(episode_length), dict(presets or {}))
  return name


def env_names() -> tuple[str, ...]:
  """mgjax's env names, then those registered with `register_env`."""
  return ENV_NAMES + tuple(REGISTERED)


def env_presets(name: str) -> dict[str, dict[str, Any]]:
  """{algorithm name: Config fields} of a registered env (`register_env`'s presets); {}
  for mgjax's own and brax's."""
  entry = REGISTERED.get(name)
  return entry.presets if entry else {}


@dataclasses.dataclass(frozen=True)
class EnvInfo:
  """An environment with the facts a learner needs about it.

  Attributes:
    name: registry name.
    env: the unbatched brax `Env` (wrapped in `distractors.Distractors` when
      distractor_dims > 0, else the env itself).
    obs_size: observation length (the env's own, plus distractor_dims).
    action_size: action length; actions live in [-1, 1]^action_size.
    episode_length: time limit for training and evaluation.
    termination_fn: next_obs [obs_size] -> float32 scalar, 1.0 where the env would set done
      because of a terminal state (never because of the time limit); it reads only the
      first obs_size − distractor_dims entries.
  """

  name: str
  env: Env
  obs_size: int
  action_size: int
  episode_length: int
  termination_fn: Callable[[jax.Array], jax.Array]


def make_env(
  name: str, *, backend: str = "mjx", episode_length: int | None = None, distractor_dims: int = 0
) -> EnvInfo:
  """Builds an environment by name.

  Args:
    name: "pointmass", an env of `register_env`, or any env registered in brax
      (`brax.envs.get_environment`).
    backend: brax physics backend ("mjx", "generalized", ...); ignored for pointmass.
    episode_length: time limit; default 100 for pointmass, 1000 (brax's) for brax envs.
    distractor_dims: D ≥ 0 observation entries appended with their own dynamics
      x' = tanh(W x + b), independent of action, reward and termination
      (`mgjax.envs.distractors`); 0 = the env as it is.
  Returns:
    EnvInfo. termination_fn reproduces the env's done from the next observation for hopper,
    walker2d, ant, humanoid, inverted_pendulum, inverted_double_pendulum and pointmass
    (see `mgjax.envs.terminations` for the rare inexact cases); halfcheetah, reacher,
    swimmer and pusher never terminate (always 0). Other registered brax envs (e.g.
    humanoidstandup) also get an always-0 termination_fn: correct for brax 0.14's envs,
    not derived for envs registered by users.
  Raises:
    ValueError: unknown name or backend, episode_length not a positive integer, or
      distractor_dims not a non-negative integer.
  """
  registered = _brax_names()
  known = sorted(set(env_names()) | registered)
  if name in REGISTERED:
    entry = REGISTERED[name]
    env = entry.make(backend=backend)
    default_length = entry.episode_length
    termination_fn = entry.termination_fn
  elif name == "pointmass":
    env = pointmass.PointMass()
    default_length = pointmass.EPISODE_LENGTH
    termination_fn = env.termination
  elif name in registered:
    if backend not in BACKENDS:
      raise ValueError(
        f"backend={backend!r}: unknown physics backend; choose one of: {', '.join(BACKENDS)}"
      )
    env = brax_envs.get_environment(name, backend=backend)
    default_length = _BRAX_EPISODE_LENGTH
    termination_fn = terminations.termination_fn(name, env)
  else:
    raise ValueError(f"env={name!r}: unknown environment; choose one of: {', '.join(known)}")
  if episode_length is None:
    episode_length = default_length
  if not isinstance(episode_length, numbers.Integral) or episode_length < 1:
    raise ValueError(f"episode_length={episode_length!r}: must be a positive integer")
  if not isinstance(distractor_dims, numbers.Integral) or distractor_dims < 0:
    raise ValueError(f"distractor_dims={distractor_dims!r}: must be a non-negative integer")
  if distractor_dims:
    env = distractors.Distractors(env, int(distractor_dims))
    termination_fn = _first_entries(termination_fn, int(distractor_dims))
  # eval_shape traces reset instead of running it (brax's observation_size runs it eagerly).
  reset = functools.partial(batched_reset, env)
  obs_shape = jax.eval_shape(reset, jax.random.split(jax.random.key(0), 1)).obs.shape
  return EnvInfo(
    name=name,
    env=env,
    obs_size=int(obs_shape[-1]),
    action_size=int(env.action_size),
    episode_length=int(episode_length),
    termination_fn=termination_fn,
  )


def _first_entries(
  fn: Callable[[jax.Array], jax.Array], dims: int
) -> Callable[[jax.Array], jax.Array]:
  """fn of obs [n] -> fn of obs [n + dims], reading its first n entries."""
  return lambda obs: fn(obs[:-dims])


def _brax_names() -> set[str]:
  return set(brax_envs._envs)  # pylint: disable=protected-access  (brax's registry)


def is_known(name: str) -> bool:
  """Whether `make_env(name)` knows the env: mgjax's names, those of `register_env`, and
  every registered brax env."""
  return name in ENV_NAMES or name in REGISTERED or name in _brax_names()
