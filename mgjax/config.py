"""Run configuration: `RunConfig`, the settings of the run itself, and `Config`, every
part's settings in one frozen record (what config.json holds and the command line sets).

Each part is a frozen dataclass beside the code that reads it, and checks itself:

    RunConfig       mgjax.config                  algo, env, steps, envs, evaluation, buffer
    PPOConfig       mgjax.agents.ppo              PPO and its networks
    ModelConfig     mgjax.models.fitting          the dynamics model and its NLL fit
    ModelPPOConfig  mgjax.agents.ppo              PPO's branched rollouts in the model
    MGConfig        mgjax.models.fitting          the MG model stage
    SACConfig       mgjax.agents.sac              SAC
    MBPOConfig      mgjax.models.mbpo_config      the ensemble fit and branched rollouts

An algorithm names the parts it reads (`mgjax.algorithms.Spec.parts`) and checks only those;
its presets and cross-part checks live with the algorithm, and
`mgjax.algorithms.make_config` applies both.
"""

import dataclasses
from typing import Any

from mgjax import envs
from mgjax.agents.ppo import ModelPPOConfig, PPOConfig
from mgjax.agents.sac import SACConfig
from mgjax.checks import ConfigError, Part, fail, non_negative, positive  # noqa: F401
from mgjax.models.fitting import MG_OPTIMIZERS, MG_STARTS, MGConfig, ModelConfig  # noqa: F401
from mgjax.models.mbpo_config import ELITE_DRAWS, MBPOConfig  # noqa: F401

# Names of earlier versions, still read from config.json, resume points and the CLI.
ALIASES = {"rollout_schedule": "branch_schedule"}


@dataclasses.dataclass(frozen=True)
class RunConfig(Part):
  """The run: which algorithm on which env, for how long, with how many envs, and how it is
  evaluated."""

  SECTION = "run"

  algo: str = "mg"  # a name of mgjax.algorithms.REGISTRY
  env: str = "hopper"  # any name of mgjax.envs.ENV_NAMES or a brax env
  backend: str = "mjx"  # brax physics backend
  total_steps: int = 100_000  # real env steps per seed (rounded to whole eval chunks)
  num_envs: int = 32  # parallel training envs per seed
  env_group: int = 0  # training envs of a run stepped at once, the groups in
  # sequence (divides num_envs); 0 = all num_envs
  rollout_length: int = 32  # real env steps per env per iteration
  episode_length: int = 0  # time limit; 0 = the env's default
  distractor_dims: int = 0  # D observation entries appended with their own dynamics,
  # independent of action and reward (mgjax.envs.distractors)
  eval_every: int = 10  # iterations between evaluations (one jitted chunk)
  num_eval_envs: int = 8  # deterministic-policy episodes per evaluation
  buffer_size: int = 100_000  # real transitions kept (for model fitting, or SAC's replay)

  def check(self) -> None:
    if not envs.is_known(self.env):
      fail("env", self.env, "unknown environment; choose one of " + ", ".join(envs.env_names()))
    positive(self, ("total_steps", "num_envs", "rollout_length", "eval_every", "num_eval_envs"))
    positive(self, ("buffer_size",))
    non_negative(self, ("env_group", "episode_length", "distractor_dims"))
    if self.env_group and self.num_envs % self.env_group:
      fail("env_group", self.env_group, f"does not divide num_envs = {self.num_envs}")

  @property
  def batch_steps(self) -> int:
    """Real env steps per iteration per run."""
    return self.num_envs * self.rollout_length


# Every part, in the order of config.json and --help.
PARTS: tuple[type[Part], ...] = (
  RunConfig,
  PPOConfig,
  ModelConfig,
  ModelPPOConfig,
  MGConfig,
  SACConfig,
  MBPOConfig,
)


@dataclasses.dataclass(frozen=True)
class Config(MBPOConfig, SACConfig, MGConfig, ModelPPOConfig, ModelConfig, PPOConfig, RunConfig):
  """Everything a run depends on: every part's fields in one record, in the order of
  `PARTS` (a dataclass takes its bases' fields from the last base to the first). Defaults:
  `mg` on MJX hopper, sized for a 2-core CPU. A part of it is `PPOConfig.of(config)`."""

  SECTION = ""

  def check(self) -> None:
    """Every part's checks (an algorithm checks only its own: `mgjax.algorithms.validate`)."""
    check_parts(self)

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, d: dict[str, Any]) -> "Config":
    """The Config of `to_dict` (or of config.json: lists become tuples again; names of
    earlier versions, `ALIASES`, are read too), not validated."""
    d = {ALIASES.get(k, k): v for k, v in d.items()}
    fields = {
      f.name: tuple(d[f.name]) if isinstance(f.default, tuple) else d[f.name]
      for f in dataclasses.fields(cls)
      if f.name in d
    }
    return cls(**fields)


def check_parts(config: Any, parts: tuple[type[Part], ...] = PARTS) -> None:
  """Runs each part's check on `config` (by default every part's); raises ConfigError
  naming the first bad field and its value."""
  for part in parts:
    part.check(config)
