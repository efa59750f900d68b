"""Environments: brax envs by name, a fast pure-JAX point mass, batched training and evaluation.

`make_env(name)` -> `EnvInfo`; `register_env(name, make, termination_fn)` adds an env;
`make_env(name)` (the env, its sizes, time limit and termination function),
`make_env(name, distractor_dims=D)` with D distractor observation entries (`Distractors`);
`TrainingEnv` batches it with automatic resets; `evaluate` runs evaluation episodes and
`play_episode` records one.
"""

from mgjax.envs.distractors import Distractors
from mgjax.envs.pointmass import PointMass
from mgjax.envs.registry import (
  BACKENDS,
  ENV_NAMES,
  EnvInfo,
  env_names,
  env_presets,
  is_known,
  make_env,
  register_env,
)
from mgjax.envs.training import TrainingEnv, evaluate, play_episode

__all__ = [
  "BACKENDS",
  "Distractors",
  "ENV_NAMES",
  "EnvInfo",
  "PointMass",
  "TrainingEnv",
  "env_names",
  "env_presets",
  "evaluate",
  "is_known",
  "make_env",
  "play_episode",
  "register_env",
]
