"""Termination functions of the next observation, one per brax env that terminates.

Model rollouts stop where the real environment would have: `termination_fn(next_obs)` is
1.0 where the env would set done because of a terminal state (never for the time limit).
"""

from typing import Callable

import jax
import jax.numpy as jnp

from mgjax.envs.core import Env


def never(obs: jax.Array) -> jax.Array:
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
    state_vec = obs[i_z + 1 :]  # q[2:] then clip(qd, -10, 10)
    healthy = jnp.all((s_lo < state_vec) & (state_vec < s_hi))
    healthy &= (z_lo < obs[i_z]) & (obs[i_z] < z_hi)
    healthy &= (a_lo < obs[i_z + 1]) & (obs[i_z + 1] < a_hi)
    return _as_done(~healthy)

  return fn if env._terminate_when_unhealthy else never


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

  return fn if env._terminate_when_unhealthy else never


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
    raise NotImplementedError(
      f"integrator={int(env.sys.opt.integrator)}: termination "
      "reconstruction assumes MuJoCo's Euler integrator"
    )
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

  return fn if env._terminate_when_unhealthy else never


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


TERMINATIONS = {
  "hopper": _hopper_termination,
  "walker2d": _walker2d_termination,
  "ant": _torso_height_termination,
  "humanoid": _torso_height_termination,
  "inverted_pendulum": _inverted_pendulum_termination,
  "inverted_double_pendulum": _inverted_double_pendulum_termination,
}


def termination_fn(name: str, env: Env) -> Callable[[jax.Array], jax.Array]:
  """The termination function of brax env `name` (always 0 for envs that never terminate)."""
  return TERMINATIONS.get(name, lambda _: never)(env)
