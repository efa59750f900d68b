"""Our hopper (brax 0.14's Hopper on MJX) against Gymnasium's Hopper-v4, on the same states
and actions.

Three simulators of the hopper, each stepped as its env steps it (4 physics steps of
0.002 s per env step, forward reward (x' − x)/dt, healthy reward 1, control cost 1e-3·|a|²):

  gym   MuJoCo (C) on Gymnasium 0.29.1's hopper.xml (RK4, solver iterations 100, every geom
        in contact with the floor): Hopper-v4, the env of erl_lib's curves
  brax  MuJoCo (C) on brax's hopper.xml (Euler, solver iterations 4, only the foot in contact)
  mjx   brax's Hopper env on the MJX backend (mgjax's `hopper`)
  gym_euler  `gym` with the Euler integrator (one step only): the integrator's share

Positions are compared in Gymnasium's coordinates (brax's rootz has no ref: z = q1 + 1.25).

1. One step: from states that `gym` visits under uniform random actions, each simulator
   takes the same action; the error of `brax` and `mjx` against `gym` is reported relative
   to `gym`'s own change over the step (median over states, per coordinate group).
2. Open loop: from one initial state per episode (Hopper-v4's reset noise, 5e-3), the same
   sequence of uniform random actions, scaled by 1, 0.3 and 0 (episodes of each), in each
   simulator until its own termination (or 1000 steps): episode length and return, and the
   step at which the positions first differ by more than 0.01.

  python experiments/hopper_env_check.py \\
      --gym-xml results/published/erl_lib/gymnasium-0.29.1-hopper.xml \\
      --out results/published/erl_lib/hopper_env_check.json
"""

import json
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import mujoco
import numpy as np

from mgjax.envs import make_env
from mgjax.run.cli import Parser

BRAX_XML = Path(__import__("brax").__file__).parent / "envs" / "assets" / "hopper.xml"
FRAMES, DT = 4, 0.008
Z_REF = 1.25  # Gymnasium's rootz ref; brax's rootz starts at 0


def healthy(qpos, qvel) -> bool:
  """Hopper-v4's (and brax's) health check, on Gymnasium's coordinates."""
  state = np.concatenate([qpos[2:], qvel])
  return bool(np.all(np.abs(state) < 100.0) and qpos[1] > 0.7 and abs(qpos[2]) < 0.2)


class MjHopper:
  """Hopper-v4's step on a MuJoCo model (z_offset: qpos[1] of the model = z − z_offset)."""

  def __init__(self, xml: Path, z_offset: float):
    self.model = mujoco.MjModel.from_xml_path(str(xml))
    self.data = mujoco.MjData(self.model)
    self.z_offset = z_offset

  def set(self, qpos, qvel):
    mujoco.mj_resetData(self.model, self.data)
    self.data.qpos[:] = qpos - np.array([0, self.z_offset, 0, 0, 0, 0])
    self.data.qvel[:] = qvel
    mujoco.mj_forward(self.model, self.data)

  def state(self):
    return self.data.qpos + np.array([0, self.z_offset, 0, 0, 0, 0]), self.data.qvel.copy()

  def step(self, action):
    x0 = self.data.qpos[0]
    self.data.ctrl[:] = action
    mujoco.mj_step(self.model, self.data, nstep=FRAMES)
    qpos, qvel = self.state()
    reward = (qpos[0] - x0) / DT + 1.0 - 1e-3 * float(np.sum(np.square(action)))
    return qpos, qvel, reward


def mjx_stepper():
  """jitted, vmapped (qpos, qvel [B, 6] in Gymnasium's coordinates, actions [B, 3]) ->
  (qpos, qvel, reward) after one env step of brax's Hopper on MJX."""
  env = make_env("hopper").env
  offset = jnp.array([0, Z_REF, 0, 0, 0, 0])
  proto = env.reset(jax.random.key(0))

  def one(qpos, qvel, action):
    state = proto.replace(pipeline_state=env.pipeline_init(qpos - offset, qvel))
    nxt = env.step(state, action)
    return nxt.pipeline_state.q + offset, nxt.pipeline_state.qd, nxt.reward

  return jax.jit(jax.vmap(one))


def rollout(stepper, qpos, qvel, actions):
  """Open loop until unhealthy or the actions run out -> (length, return, qpos per step)."""
  ret, traj = 0.0, []
  for t, a in enumerate(actions):
    qpos, qvel, r = stepper(qpos, qvel, a)
    ret += r
    traj.append(qpos)
    if not healthy(qpos, qvel):
      return t + 1, ret, np.array(traj)
  return len(actions), ret, np.array(traj)


def _parser() -> Parser:
  p = Parser(description=__doc__)
  p.add_argument("--gym-xml", required=True, help="Gymnasium 0.29.1's hopper.xml")
  p.add_argument("--episodes", type=int, default=30, help="open-loop episodes (default 30)")
  p.add_argument("--states", type=int, default=2000, help="one-step states (default 2000)")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--out", required=True, help="JSON of the results")
  return p


def _mj_step(sim: MjHopper):
  """(qpos, qvel, action) -> one env step of `sim` from that state."""

  def f(qpos, qvel, a):
    sim.set(qpos, qvel)
    return sim.step(a)

  return f


def _mjx_single(mjx):
  """`mjx_stepper()`'s batched step for one state and action, in float64 numpy."""

  def mjx_step(qpos, qvel, a):
    q, qd, r = mjx(qpos[None], qvel[None], np.asarray(a, np.float32)[None])
    return np.asarray(q[0], np.float64), np.asarray(qd[0], np.float64), float(r[0])

  return mjx_step


def _reset_state(rng):
  """Hopper-v4's reset: (qpos, qvel) with uniform noise of 5e-3 on its initial state."""
  qpos = np.array([0, Z_REF, 0, 0, 0, 0]) + rng.uniform(-5e-3, 5e-3, 6)
  qvel = rng.uniform(-5e-3, 5e-3, 6)
  return qpos, qvel


def _visited_states(gym: MjHopper, rng, n: int):
  """(states [n, 12], actions [n, 3]): what `gym` visits under uniform random actions,
  episode after episode."""
  starts, acts = [], []
  while len(starts) < n:
    qpos, qvel = _reset_state(rng)
    gym.set(qpos, qvel)
    for _ in range(1000):
      a = rng.uniform(-1, 1, 3)
      starts.append(np.concatenate(gym.state()))
      acts.append(a)
      qpos, qvel, _ = gym.step(a)
      if not healthy(qpos, qvel):
        break
  return np.array(starts[:n]), np.array(acts[:n])


def _one_step(sims: dict[str, MjHopper], mjx, starts, acts) -> dict:
  """Each simulator's error after one step from `starts` against `gym`'s, relative to
  gym's own change (positions, velocities) and the reward's."""
  nxt = {}
  for name, sim in sims.items():
    out = [_mj_step(sim)(s[:6], s[6:], a) for s, a in zip(starts, acts)]
    nxt[name] = (np.array([np.concatenate(o[:2]) for o in out]), np.array([o[2] for o in out]))
  q, qd, r = mjx(
    jnp.asarray(starts[:, :6], jnp.float32),
    jnp.asarray(starts[:, 6:], jnp.float32),
    jnp.asarray(acts, jnp.float32),
  )
  nxt["mjx"] = (np.concatenate([np.asarray(q), np.asarray(qd)], 1), np.asarray(r))
  change = np.abs(nxt["gym"][0] - starts)
  groups = {"positions": slice(0, 6), "velocities": slice(6, 12)}
  one_step = {}
  for name in ("brax", "mjx", "gym_euler"):
    err = np.abs(nxt[name][0] - nxt["gym"][0])
    one_step[name] = {
      **{
        f"{g}: median |error| / median |gym's change|": float(
          np.median(err[:, s]) / np.median(change[:, s])
        )
        for g, s in groups.items()
      },
      "reward: median |error|": float(np.median(np.abs(nxt[name][1] - nxt["gym"][1]))),
      "reward: median |gym's reward − 1|": float(np.median(np.abs(nxt["gym"][1] - 1.0))),
    }
  return one_step


def _open_loop(gym: MjHopper, brax: MjHopper, mjx_step, rng, episodes: int) -> list[dict]:
  """Episodes of the same random actions (scaled by 1, 0.3, 0 in turn) in each simulator:
  length, return, and the step where the positions part from `gym`'s."""
  out = []
  for i in range(episodes):
    scale = (1.0, 0.3, 0.0)[i % 3]
    qpos, qvel = _reset_state(rng)
    actions = scale * rng.uniform(-1, 1, (1000, 3))
    gym.set(qpos, qvel)
    brax.set(qpos, qvel)
    res = {
      "gym": rollout(lambda q, v, a: gym.step(a), qpos, qvel, actions),
      "brax": rollout(lambda q, v, a: brax.step(a), qpos, qvel, actions),
      "mjx": rollout(mjx_step, qpos, qvel, actions),
    }
    ep = {k: {"length": v[0], "return": round(float(v[1]), 1)} for k, v in res.items()}
    ep["action_scale"] = scale
    for k in ("brax", "mjx"):
      n = min(len(res["gym"][2]), len(res[k][2]))
      apart = np.nonzero(np.max(np.abs(res[k][2][:n] - res["gym"][2][:n]), axis=1) > 0.01)[0]
      ep[k]["apart_at"] = int(apart[0]) + 1 if apart.size else None
    out.append(ep)
  return out


def _summary(episodes: list[dict]) -> dict:
  """Per action scale and simulator: mean length and return, median step where apart."""
  return {
    f"action scale {scale}": {
      k: {
        "mean length": float(np.mean([e[k]["length"] for e in of])),
        "mean return": round(float(np.mean([e[k]["return"] for e in of])), 1),
        **(
          {"median apart_at": float(np.median([e[k]["apart_at"] or e[k]["length"] for e in of]))}
          if k != "gym"
          else {}
        ),
      }
      for k in ("gym", "brax", "mjx")
    }
    for scale in (1.0, 0.3, 0.0)
    for of in [[e for e in episodes if e["action_scale"] == scale]]
    if of
  }


def main(argv=None) -> int:
  args = _parser().parse_args(argv)
  rng = np.random.default_rng(args.seed)
  gym, brax = MjHopper(Path(args.gym_xml), 0.0), MjHopper(BRAX_XML, Z_REF)
  gym_euler = MjHopper(Path(args.gym_xml), 0.0)
  gym_euler.model.opt.integrator = mujoco.mjtIntegrator.mjINT_EULER
  mjx = mjx_stepper()
  # 1. one step, from states gym visits under random actions
  starts, acts = _visited_states(gym, rng, args.states)
  sims = {"gym": gym, "brax": brax, "gym_euler": gym_euler}
  one_step = _one_step(sims, mjx, starts, acts)
  # 2. open loop, the same actions in each simulator
  episodes = _open_loop(gym, brax, _mjx_single(mjx), rng, args.episodes)
  summary = _summary(episodes)
  out = {
    "what": __doc__.split("\n\n")[0],
    "one_step": one_step,
    "open_loop_summary": summary,
    "open_loop": episodes,
    "settings": {"episodes": args.episodes, "states": args.states, "seed": args.seed},
    "versions": {"mujoco": mujoco.__version__, "jax": jax.__version__},
  }
  Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
  print(json.dumps({"one_step": one_step, "open_loop_summary": summary}, indent=1))
  return 0


if __name__ == "__main__":
  sys.exit(main())
