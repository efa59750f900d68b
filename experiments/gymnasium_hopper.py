"""brax's Hopper on Gymnasium's hopper model, as env `hopper_gymnasium` (issue 45: is the gap
between our SAC and erl_lib's the env?).

brax's hopper.xml differs from Gymnasium's (Hopper-v4, `results/published/erl_lib/
gymnasium-0.29.1-hopper.xml`) in its integrator (Euler against RK4), its solver (4 Newton
iterations against 100) and its contacts (only the foot against the floor, where Gymnasium's
lets every geom touch the floor and each other); `experiments/hopper_env_check.py` measured
the first on the states of a random policy. This env is brax's Hopper (the same observation,
reward, termination, reset noise and 4 frames per step) on Gymnasium's XML, stepped by MJX,
with hopper's presets, so that a run on it differs from one on `hopper` in the model alone:

    python experiments/train.py --import gymnasium_hopper --algo sac --env hopper_gymnasium
"""

from pathlib import Path

from brax.envs.base import PipelineEnv
from brax.envs.hopper import Hopper
from brax.io import mjcf

from mgjax.agents.sac import TARGET_ENTROPY
from mgjax.envs import register_env, terminations
from mgjax.models.mbpo_config import MBPOConfig

NAME = "hopper_gymnasium"
XML = (
  Path(__file__).resolve().parent.parent / "results/published/erl_lib/gymnasium-0.29.1-hopper.xml"
)
N_FRAMES = 4  # brax's Hopper and Gymnasium's Hopper-v4 alike: 4 × 0.002 s per step


class GymnasiumHopper(Hopper):
  """brax's Hopper (its observation, reward, termination and reset) on Gymnasium's model."""

  def __init__(self, backend: str = "mjx", **kwargs):
    super().__init__(backend=backend, **kwargs)
    PipelineEnv.__init__(self, sys=mjcf.load(XML), backend=backend, n_frames=N_FRAMES)


def make(backend: str = "mjx") -> GymnasiumHopper:
  return GymnasiumHopper(backend=backend)


# hopper's presets (MBPO's entropy target and branch schedule), so that only the model differs.
_SAC = {"target_entropy": TARGET_ENTROPY["hopper"]}
PRESETS = {
  "sac": _SAC,
  "mbpo": {**_SAC, **MBPOConfig.for_env("hopper").changed()},
  "mg-sac": {**_SAC, **MBPOConfig.for_env("hopper").changed()},
}

register_env(
  NAME,
  make,
  terminations.termination_fn("hopper", Hopper()),
  presets=PRESETS,
  replace=True,
)
