"""A trained run's policy played again: evaluation episodes, rendered videos and the 3D
viewer (`mgjax evaluate`, mgjax/cli/evaluate.py)."""

import os
import warnings
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import jax
import numpy as np

from mgjax import envs, extras
from mgjax.run.loading import restore_policy_params
from mgjax.run.outputs import OutputError


class LoadedRun(NamedTuple):
  """A run folder's policies, restored once: its trainer, the seeds and their policy params
  (stacked on a leading seed axis)."""

  run_dir: str
  trainer: Any
  seeds: list[int]
  params: Any


def load_run(run_dir: str | os.PathLike, seeds: Sequence[int] | None = None) -> LoadedRun:
  """The saved policies of `seeds` (default all of the run's); OutputError if they cannot
  load (see `mgjax.run.loading`)."""
  return LoadedRun(str(run_dir), *restore_policy_params(run_dir, seeds))


def evaluate_run(
  run: LoadedRun, episodes: int = 10, deterministic: bool = True, key: int = 0
) -> dict[str, Any]:
  """Plays `episodes` fresh episodes (at most the run's episode length each) with the saved
  policy of every loaded seed, all seeds in one jitted, vmapped program. Every seed meets
  the same initial states (drawn from `key`).

  Returns eval.json's content: the run's algo and env, the settings, and per seed
  {"returns", "lengths" [episodes], "return_mean", "return_std", "length_mean"}, plus
  "return_mean" over seeds."""
  su, algorithm = run.trainer.setup, run.trainer.algorithm
  env_key, policy_key = jax.random.split(jax.random.key(key))

  def one(p):
    act = algorithm.make_policy(su, p, deterministic)
    return envs.evaluate(
      su.env, act, env_key, episodes, policy_key=None if deterministic else policy_key
    )

  out = jax.tree.map(np.asarray, jax.jit(jax.vmap(one))(run.params))
  per_seed = {}
  for i, seed in enumerate(run.seeds):
    returns, lengths = out["returns"][i], out["lengths"][i]
    per_seed[str(seed)] = {
      "return_mean": float(returns.mean()),
      "return_std": float(returns.std()),
      "length_mean": float(lengths.mean()),
      "returns": returns.tolist(),
      "lengths": lengths.tolist(),
    }
  config = run.trainer.config
  return {
    "run_dir": run.run_dir,
    "algo": config.algo,
    "env": config.env,
    "episodes": episodes,
    "deterministic": deterministic,
    "key": key,
    "episode_length": su.env.episode_length,
    "return_mean": float(np.mean([r["return_mean"] for r in per_seed.values()])),
    "seeds": per_seed,
  }


class Episode(NamedTuple):
  """One recorded episode: the env, its `State`s from the reset on with a leading time axis
  (those past the end repeat the last), its length T and its return."""

  env: envs.EnvInfo
  states: Any
  length: int
  ret: float


def play_episode(run: LoadedRun, seed: int, deterministic: bool = True, key: int = 0) -> Episode:
  """One episode of loaded `seed`'s policy: `evaluate_run`'s first episode with
  episodes=1."""
  su, algorithm = run.trainer.setup, run.trainer.algorithm
  env_key, policy_key = jax.random.split(jax.random.key(key))
  p = jax.tree.map(lambda x: x[run.seeds.index(seed)], run.params)
  act = algorithm.make_policy(su, p, deterministic)
  states, length, ret = jax.jit(
    lambda: envs.play_episode(
      su.env, act, env_key, policy_key=None if deterministic else policy_key
    )
  )()
  return Episode(su.env, states, int(length), float(ret))


def mujoco_model(info: envs.EnvInfo):
  """The env's MuJoCo model; OutputError for an env without one (pointmass)."""
  mj_model = getattr(getattr(info.env, "sys", None), "mj_model", None)
  if mj_model is None:
    raise OutputError(f"env={info.name!r}: has no MuJoCo model to render (only brax envs have one)")
  return mj_model


def render_frames(episode: Episode, width: int = 480, height: int = 360) -> list[np.ndarray]:
  """MuJoCo's renderer (headless: MUJOCO_GL) on each of the episode's length + 1 states ->
  RGB frames [height, width, 3], from the model's first camera (e.g. hopper's tracking
  camera) or MuJoCo's default free camera."""
  import mujoco

  mj_model = mujoco_model(episode.env)
  qpos = np.asarray(episode.states.pipeline_state.q)[: episode.length + 1]
  qvel = np.asarray(episode.states.pipeline_state.qd)[: episode.length + 1]
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
  """H.264 mp4 through the ffmpeg binary of the imageio-ffmpeg package (the viz extra)."""
  imageio_ffmpeg = extras.require("imageio_ffmpeg", "an mp4 video")

  height, width = frames[0].shape[:2]
  Path(path).parent.mkdir(parents=True, exist_ok=True)
  with warnings.catch_warnings():  # JAX warns of any fork; ffmpeg's is followed by exec
    warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called")
    writer = imageio_ffmpeg.write_frames(
      str(path), (width, height), fps=fps, macro_block_size=1, quality=7
    )
    writer.send(None)  # start the encoder
    for frame in frames:
      writer.send(np.ascontiguousarray(frame))
    writer.close()


def write_html(path: str | os.PathLike, episode: Episode, title: str) -> int:
  """brax's interactive 3D viewer of the episode, self-contained and offline
  (`mgjax.run.viewer`) -> the page's size in bytes."""
  from mgjax.run import viewer

  mujoco_model(episode.env)
  page = viewer.episode_html(
    episode.env.env.sys, episode.states.pipeline_state, episode.length, title
  )
  Path(path).parent.mkdir(parents=True, exist_ok=True)
  Path(path).write_text(page)
  return len(page.encode("utf-8"))
