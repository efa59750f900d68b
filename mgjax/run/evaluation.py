"""A trained run's policy played again: evaluation episodes and rendered videos
(experiments/evaluate.py)."""
import os
import warnings
from pathlib import Path
from typing import Any, Sequence

import jax
import numpy as np

from mgjax import envs
from mgjax.run.loading import find_run, restore_policy_params
from mgjax.run.outputs import OutputError


def evaluate_run(run_dir: str | os.PathLike, seeds: Sequence[int] | None = None,
                 episodes: int = 10, deterministic: bool = True, key: int = 0) -> dict[str, Any]:
  """Plays `episodes` fresh episodes (at most the run's episode length each) with the saved
  policy of every seed in `seeds` (default all of the run's), all seeds in one jitted,
  vmapped program. Every seed meets the same initial states (drawn from `key`).

  Returns eval.json's content: the run's algo and env, the settings, and per seed
  {"returns", "lengths" [episodes], "return_mean", "return_std", "length_mean"}, plus
  "return_mean" over seeds."""
  trainer, seeds, params = restore_policy_params(run_dir, seeds)
  su, algorithm = trainer.setup, trainer.algorithm
  env_key, policy_key = jax.random.split(jax.random.key(key))

  def one(p):
    act = algorithm.make_policy(su, p, deterministic)
    return envs.evaluate(su.env, act, env_key, episodes,
                         policy_key=None if deterministic else policy_key)

  out = jax.tree.map(np.asarray, jax.jit(jax.vmap(one))(params))
  per_seed = {}
  for i, seed in enumerate(seeds):
    returns, lengths = out["returns"][i], out["lengths"][i]
    per_seed[str(seed)] = {
        "return_mean": float(returns.mean()), "return_std": float(returns.std()),
        "length_mean": float(lengths.mean()), "returns": returns.tolist(),
        "lengths": lengths.tolist()}
  config = trainer.config
  return {"run_dir": str(run_dir), "algo": config.algo, "env": config.env,
          "episodes": episodes, "deterministic": deterministic, "key": key,
          "episode_length": su.env.episode_length,
          "return_mean": float(np.mean([r["return_mean"] for r in per_seed.values()])),
          "seeds": per_seed}


def play_episode(run_dir: str | os.PathLike, seed: int | None = None,
                 deterministic: bool = True, key: int = 0):
  """One episode of `seed`'s saved policy -> (env info, the simulator states [T + 1] as a
  pytree with a leading time axis, its length T, its return)."""
  trainer, _, params = restore_policy_params(run_dir, None if seed is None else [seed])
  su, algorithm = trainer.setup, trainer.algorithm
  env_key, policy_key = jax.random.split(jax.random.key(key))
  act = algorithm.make_policy(su, jax.tree.map(lambda x: x[0], params), deterministic)
  states, length, ret = jax.jit(
      lambda: envs.play_episode(su.env, act, env_key,
                                policy_key=None if deterministic else policy_key))()
  return su.env, states, int(length), float(ret)


def mujoco_model(info: envs.EnvInfo):
  """The env's MuJoCo model; OutputError for an env without one (pointmass)."""
  mj_model = getattr(getattr(info.env, "sys", None), "mj_model", None)
  if mj_model is None:
    raise OutputError(f"env={info.name!r}: has no MuJoCo model to render (only brax envs "
                      "have one)")
  return mj_model


def check_renderable(run_dir: str | os.PathLike) -> None:
  """OutputError, before anything runs, if the run's env cannot be rendered."""
  config = find_run(run_dir).config
  mujoco_model(envs.make_env(config.env, backend=config.backend,
                             episode_length=config.episode_length or None))


def render_frames(info: envs.EnvInfo, states, length: int, width: int = 480,
                  height: int = 360) -> list[np.ndarray]:
  """MuJoCo's renderer (headless: MUJOCO_GL) on each of the first length + 1 states ->
  RGB frames [height, width, 3], from the model's first camera (e.g. hopper's tracking
  camera) or MuJoCo's default free camera."""
  import mujoco
  mj_model = mujoco_model(info)
  qpos = np.asarray(states.pipeline_state.q)[:length + 1]
  qvel = np.asarray(states.pipeline_state.qd)[:length + 1]
  data = mujoco.MjData(mj_model)
  camera = 0 if mj_model.ncam else -1
  frames = []
  with mujoco.Renderer(mj_model, height, width) as renderer:
    for q, qd in zip(qpos, qvel):
      data.qpos[:], data.qvel[:] = q, qd
      mujoco.mj_forward(mj_model, data)
      renderer.update_scene(data, camera=camera)
      frames.append(renderer.render().copy())
  return frames


def write_mp4(path: str | os.PathLike, frames: list[np.ndarray], fps: float) -> None:
  """H.264 mp4 through the ffmpeg binary of the imageio-ffmpeg package."""
  import imageio_ffmpeg
  height, width = frames[0].shape[:2]
  Path(path).parent.mkdir(parents=True, exist_ok=True)
  with warnings.catch_warnings():  # JAX warns of any fork; ffmpeg's is followed by exec
    warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called")
    writer = imageio_ffmpeg.write_frames(str(path), (width, height), fps=fps,
                                         macro_block_size=1, quality=7)
    writer.send(None)  # start the encoder
    for frame in frames:
      writer.send(np.ascontiguousarray(frame))
    writer.close()


def render_episode(run_dir: str | os.PathLike, seed: int | None = None,
                   deterministic: bool = True, key: int = 0, width: int = 480,
                   height: int = 360) -> tuple[list[np.ndarray], float, float]:
  """One episode of `seed`'s saved policy (`evaluate_run`'s first with episodes=1),
  rendered -> (RGB frames, the frame rate that plays it in real time: one frame per control
  step of the env, its return)."""
  info, states, length, ret = play_episode(run_dir, seed, deterministic, key)
  return (render_frames(info, states, length, width, height), 1.0 / float(info.env.dt), ret)
