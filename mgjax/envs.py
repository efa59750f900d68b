"""Environments: brax envs by name, a fast pure-JAX point mass, batched training and evaluation.

Every environment comes as an `EnvInfo` with a known termination function of the next
observation, which model rollouts use to stop where the real environment would have
(`termination_fn(next_obs)`, unbatched; callers vmap).

`TrainingEnv` batches an env with a time limit and automatic resets in the style of brax's
`EpisodeWrapper` + `AutoResetWrapper` (`brax/envs/wrappers/training.py`), but keeps what a
model-based learner needs: the observation a step led to *before* the reset
(`info['final_obs']`) and terminations apart from truncations.
"""
import contextlib
import dataclasses
import functools
import io
import numbers
from typing import Callable

import jax

# MJX prints a notice on import when its optional Warp (GPU kernel) backend is absent; the
# MJX backend does not need it, and the notice would mix into the CLIs' output.
with contextlib.redirect_stdout(io.StringIO()):
  from brax import envs as brax_envs
  from brax.envs.base import Env, State
import jax.numpy as jnp

ENV_NAMES = ("hopper", "walker2d", "halfcheetah", "ant", "humanoid", "inverted_pendulum",
             "inverted_double_pendulum", "reacher", "swimmer", "pusher", "pointmass")
_BACKENDS = ("mjx", "generalized", "spring", "positional")
_BRAX_EPISODE_LENGTH = 1000  # brax's customary time limit for all of its envs.
_POINTMASS_EPISODE_LENGTH = 100


@dataclasses.dataclass(frozen=True)
class EnvInfo:
  """An environment with the facts a learner needs about it.

  Attributes:
    name: registry name.
    env: the unwrapped, unbatched brax `Env`.
    obs_size: observation length.
    action_size: action length; actions live in [-1, 1]^action_size.
    episode_length: time limit for training and evaluation.
    termination_fn: next_obs [obs_size] -> float32 scalar, 1.0 where the env would set done
      because of a terminal state (never because of the time limit).
  """
  name: str
  env: Env
  obs_size: int
  action_size: int
  episode_length: int
  termination_fn: Callable[[jax.Array], jax.Array]


# ----------------------------------------------------------------------------- point mass


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
    return (jnp.sum(obs[:2]**2) > self.max_position**2).astype(jnp.float32)

  @property
  def observation_size(self) -> int:
    return 4

  @property
  def action_size(self) -> int:
    return 2

  @property
  def backend(self) -> str:
    return "jax"


# ----------------------------------------------------------------------- termination fns


def _never(obs: jax.Array) -> jax.Array:
  del obs
  return jnp.zeros((), jnp.float32)


def _as_done(unhealthy: jax.Array) -> jax.Array:
  return unhealthy.astype(jnp.float32)


def _planar_offset(env: Env) -> int:
  """Index of the height z in hopper/walker2d observations: [q with q1 := z, clip(qd)]."""
  # pylint: disable-next=protected-access
  return 0 if env._exclude_current_positions_from_observation else 1


def _hopper_termination(env: Env) -> Callable[[jax.Array], jax.Array]:
  """brax Hopper: unhealthy unless z, the torso angle q2 and state (q[2:], qd) are in range.

  The observation holds the very torso height z = x.pos[0, 2] that the env tests. Exact
  except when a joint speed exceeds the state range (100 by default): the observation
  clips qd to [-10, 10], so such a state is invisible; it does not happen in practice.
  """
  # pylint: disable=protected-access
  z_lo, z_hi = env._healthy_z_range
  a_lo, a_hi = env._healthy_angle_range
  s_lo, s_hi = env._healthy_state_range
  i_z = _planar_offset(env)

  def fn(obs):
    state_vec = obs[i_z + 1:]  # q[2:] then clip(qd, -10, 10)
    healthy = jnp.all((s_lo < state_vec) & (state_vec < s_hi))
    healthy &= (z_lo < obs[i_z]) & (obs[i_z] < z_hi)
    healthy &= (a_lo < obs[i_z + 1]) & (obs[i_z + 1] < a_hi)
    return _as_done(~healthy)

  return fn if env._terminate_when_unhealthy else _never


def _walker2d_termination(env: Env) -> Callable[[jax.Array], jax.Array]:
  """brax Walker2d: unhealthy unless min_z < z < max_z and min_angle < q2 < max_angle.

  Exact: the observation holds the very z = x.pos[0, 2] and q2 that the env tests.
  """
  # pylint: disable=protected-access
  z_lo, z_hi = env._healthy_z_range
  a_lo, a_hi = env._healthy_angle_range
  i_z = _planar_offset(env)

  def fn(obs):
    z, angle = obs[i_z], obs[i_z + 1]
    healthy = (z > z_lo) & (z < z_hi) & (angle > a_lo) & (angle < a_hi)
    return _as_done(~healthy)

  return fn if env._terminate_when_unhealthy else _never


def _mjx_lag(env: Env) -> float:
  """Seconds by which brax's MJX link transforms `x` lag the joint positions `q`.

  brax's MJX pipeline reads `x` from `data.xpos`, which `mjx.step` computes *before*
  integrating, so `x` belongs to the positions one physics substep earlier. With MuJoCo's
  (semi-implicit) Euler integrator, q_before = q − timestep · qd for slide, hinge and the
  free joint's translation, with qd the new velocity. Other backends recompute `x` after
  integrating: no lag.
  """
  if env.backend != "mjx":
    return 0.0
  if int(env.sys.opt.integrator) != 0:  # mjINT_EULER
    raise NotImplementedError(f"integrator={int(env.sys.opt.integrator)}: termination "
                              "reconstruction assumes MuJoCo's Euler integrator")
  return float(env.sys.opt.timestep)


def _torso_height_termination(env: Env) -> Callable[[jax.Array], jax.Array]:
  """brax Ant / Humanoid: unhealthy when the torso height x.pos[0, 2] leaves [min_z, max_z].

  obs = [q[2:] (or q), qd, ...]; the torso has a free joint, so its height is q2, less
  timestep · qd2 under MJX (see `_mjx_lag`). Exact up to float rounding (qd is not clipped
  in these observations).
  """
  # pylint: disable=protected-access
  z_lo, z_hi = env._healthy_z_range
  i_z = 0 if env._exclude_current_positions_from_observation else 2
  i_vz = i_z + env.sys.q_size()  # qd follows the nq - 2 + i_z positions; qd2 is the z speed.
  lag = _mjx_lag(env)

  def fn(obs):
    z = obs[i_z] - lag * obs[i_vz]
    return _as_done((z < z_lo) | (z > z_hi))

  return fn if env._terminate_when_unhealthy else _never


def _inverted_pendulum_termination(env: Env) -> Callable[[jax.Array], jax.Array]:
  """brax InvertedPendulum: obs = [cart x, pole angle, velocities]; done when |angle| > 0.2.

  Exact (brax tests the observation itself).
  """
  del env
  return lambda obs: _as_done(jnp.abs(obs[1]) > 0.2)


def _inverted_double_pendulum_termination(env: Env) -> Callable[[jax.Array], jax.Array]:
  """brax InvertedDoublePendulum: done when the tip height y <= 1.

  The tip is the point 0.6 above pole2's origin in pole2's frame `x` (as in brax's step).
  With both hinges about y,
    y = z_hinge + l1 cos θ1 + 0.6 cos(θ1 + θ2),
  where θ = q for backends whose `x` matches `q` (then cos and sin come straight from
  obs = [x, sin q1, sin q2, cos q1, cos q2, clip(qd, -10, 10)]), and θ = q − timestep · qd
  under MJX (see `_mjx_lag`). Exact up to float rounding, except under MJX when a hinge
  speed exceeds 10 rad/s: the observation clips it, so the lag correction is then an
  underestimate (up to timestep · (|qd| − 10) rad of angle error).
  """
  body_pos = jnp.asarray(env.sys.body_pos)  # rows: world, cart, pole, pole2
  z_hinge = float(body_pos[1, 2] + body_pos[2, 2])
  l1 = float(body_pos[3, 2])
  tip = 0.6
  lag = _mjx_lag(env)

  def fn(obs):
    angles = jnp.arctan2(obs[1:3], obs[3:5]) - lag * obs[6:8]
    theta1, theta2 = angles[0], angles[1]
    y = z_hinge + l1 * jnp.cos(theta1) + tip * jnp.cos(theta1 + theta2)
    return _as_done(y <= 1.0)

  return fn


_TERMINATIONS = {
    "hopper": _hopper_termination,
    "walker2d": _walker2d_termination,
    "ant": _torso_height_termination,
    "humanoid": _torso_height_termination,
    "inverted_pendulum": _inverted_pendulum_termination,
    "inverted_double_pendulum": _inverted_double_pendulum_termination,
}


# ------------------------------------------------------------------------------ make_env


def make_env(name: str, *, backend: str = "mjx", episode_length: int | None = None) -> EnvInfo:
  """Builds an environment by name.

  Args:
    name: "pointmass" or any env registered in brax (`brax.envs.get_environment`).
    backend: brax physics backend ("mjx", "generalized", ...); ignored for pointmass.
    episode_length: time limit; default 100 for pointmass, 1000 (brax's) for brax envs.
  Returns:
    EnvInfo. termination_fn reproduces the env's done from the next observation for hopper,
    walker2d, ant, humanoid, inverted_pendulum, inverted_double_pendulum and pointmass
    (see the `_*_termination` docstrings for the rare inexact cases); halfcheetah, reacher,
    swimmer and pusher never terminate (always 0). Other registered brax envs (e.g.
    humanoidstandup) also get an always-0 termination_fn: correct for brax 0.14's envs,
    not derived for envs registered by users.
  Raises:
    ValueError: unknown name or backend, or episode_length not a positive integer.
  """
  registered = set(brax_envs._envs)  # pylint: disable=protected-access
  known = sorted(set(ENV_NAMES) | registered)
  if name == "pointmass":
    env = PointMass()
    default_length = _POINTMASS_EPISODE_LENGTH
    termination_fn = env.termination
  elif name in registered:
    if backend not in _BACKENDS:
      raise ValueError(f"backend={backend!r}: unknown physics backend; choose one of: "
                       f"{', '.join(_BACKENDS)}")
    env = brax_envs.get_environment(name, backend=backend)
    default_length = _BRAX_EPISODE_LENGTH
    termination_fn = _TERMINATIONS.get(name, lambda _: _never)(env)
  else:
    raise ValueError(f"env={name!r}: unknown environment; choose one of: {', '.join(known)}")
  if episode_length is None:
    episode_length = default_length
  if not isinstance(episode_length, numbers.Integral) or episode_length < 1:
    raise ValueError(f"episode_length={episode_length!r}: must be a positive integer")
  # eval_shape traces reset instead of running it (brax's observation_size runs it eagerly).
  reset = functools.partial(_env_reset, env)
  obs_shape = jax.eval_shape(reset, jax.random.split(jax.random.key(0), 1)).obs.shape
  return EnvInfo(name=name, env=env, obs_size=int(obs_shape[-1]),
                 action_size=int(env.action_size), episode_length=int(episode_length),
                 termination_fn=termination_fn)


# --------------------------------------------------------------------------- TrainingEnv


def _where_done(done: jax.Array, x: jax.Array, y: jax.Array) -> jax.Array:
  """done [B], x, y [B, ...] -> x where done else y."""
  return jnp.where(jnp.reshape(done, done.shape + (1,) * (x.ndim - 1)).astype(bool), x, y)


def _env_reset(env: Env, keys: jax.Array) -> State:
  """keys [B] -> batched env.reset."""
  # MJX broadcasts ranks implicitly; keep it working under jax_numpy_rank_promotion="raise".
  with jax.numpy_rank_promotion("allow"):
    return jax.vmap(env.reset)(keys)


def _env_step(env: Env, state: State, action: jax.Array) -> State:
  """Batched env.step with done cleared first (envs that never terminate keep the old done)."""
  state = state.replace(done=jnp.zeros_like(state.done))
  with jax.numpy_rank_promotion("allow"):
    state = jax.vmap(env.step)(state, action)
  return state.replace(reward=jnp.asarray(state.reward, jnp.float32),
                       done=jnp.asarray(state.done, jnp.float32))


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
  draws new ones. Methods are pure; jit the caller.
  """

  def __init__(self, info: EnvInfo, num_envs: int):
    if num_envs < 1:
      raise ValueError(f"num_envs={num_envs!r}: must be a positive integer")
    self.info = info
    self.num_envs = num_envs

  def _reset_batch(self, key: jax.Array) -> State:
    return _env_reset(self.info.env, jax.random.split(key, self.num_envs))

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
    return state.replace(info={**state.info, "first_pipeline_state": fresh.pipeline_state,
                               "first_obs": fresh.obs})

  def step(self, state: State, action: jax.Array) -> State:
    """action [num_envs, action_size] (in the env's action range) -> next State."""
    info = state.info
    nstate = _env_step(self.info.env, state, action)
    termination = nstate.done
    steps = info["steps"] + 1
    time_up = (steps >= self.info.episode_length).astype(jnp.float32)
    done = jnp.maximum(termination, time_up)
    episode_return = info["episode_return"] + nstate.reward
    episode_length = info["episode_length"] + 1
    ended = done > 0
    reset = functools.partial(_where_done, done)
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
        pipeline_state=jax.tree.map(reset, info["first_pipeline_state"],
                                    nstate.pipeline_state),
        obs=reset(info["first_obs"], nstate.obs),
        done=done,
        info=new_info)


# ------------------------------------------------------------------------------ evaluate


def evaluate(info: EnvInfo, act_fn: Callable[[jax.Array], jax.Array], key: jax.Array,
             num_envs: int) -> dict[str, jax.Array]:
  """Runs num_envs fresh episodes of at most info.episode_length steps; pure and jittable.

  Args:
    info: the environment.
    act_fn: obs [num_envs, obs_size] -> actions [num_envs, action_size] (deterministic,
      in the env's action range).
    key: randomness of the initial states.
    num_envs: number of episodes.
  Returns:
    {"return": mean return, "returns": [num_envs], "length": mean episode length,
     "lengths": [num_envs]}; reward counts up to and including each env's first done.
  """
  env = info.env
  state = _env_reset(env, jax.random.split(key, num_envs))
  state = state.replace(reward=jnp.asarray(state.reward, jnp.float32),
                        done=jnp.zeros((num_envs,), jnp.float32))

  def body(carry, _):
    state, active, returns, lengths = carry
    nstate = _env_step(env, state, act_fn(state.obs))
    returns = returns + jnp.where(active, nstate.reward, 0.0)
    lengths = lengths + active.astype(jnp.int32)
    # Finished envs stay frozen in their final state (no NaNs from stepping past the end).
    state = jax.tree.map(lambda x, y: _where_done(active, x, y), nstate, state)
    active = active & (nstate.done == 0)
    return (state, active, returns, lengths), None

  init = (state, jnp.ones((num_envs,), bool), jnp.zeros((num_envs,), jnp.float32),
          jnp.zeros((num_envs,), jnp.int32))
  (_, _, returns, lengths), _ = jax.lax.scan(body, init, None, length=info.episode_length)
  return {"return": jnp.mean(returns), "returns": returns,
          "length": jnp.mean(lengths.astype(jnp.float32)), "lengths": lengths}
