"""The settings of MBPO's loop (mbpo, mg-sac; Janner et al. 2019) beyond SAC's and the
model's: the ensemble's fit and elites, and the branched rollouts that make model data.
`MBPOConfig.for_env` holds the paper's branch-length schedule per env."""

import dataclasses

from mgjax.checks import Part, non_negative, one_of, positive, unit_interval

ELITE_DRAWS = ("row", "block")
# MBPO's model branch-length schedules (and humanoid's longer model memory) per env.
BRANCH = {
  "hopper": {"branch_schedule": (20, 100, 1, 15)},
  "walker2d": {"branch_schedule": (20, 100, 1, 1)},
  "halfcheetah": {"branch_schedule": (20, 100, 1, 1)},
  "ant": {"branch_schedule": (20, 100, 1, 25)},
  "humanoid": {"branch_schedule": (20, 300, 1, 25), "model_retain_epochs": 5},
}


@dataclasses.dataclass(frozen=True)
class MBPOConfig(Part):
  """SAC on real and branched model data: the ensemble's fit and the branched rollouts."""

  SECTION = "mbpo, mg-sac"

  real_ratio: float = 0.05  # share of real transitions in each SAC minibatch
  elites: int = 5  # ensemble members used for rollouts (best held-out NLL)
  model_patience: int = 5  # stop model training after this many epochs without
  # a 1% held-out improvement of any member
  model_max_epochs: int = 50  # cap on model epochs per training round
  model_epoch_steps: int = 0  # gradient steps per model epoch; 0 = one pass over data
  model_fit_budget: int = 0  # > 0: exactly this many ensemble gradient steps per model
  # round (warm-started, epochs of model_epoch_steps, no
  # early stopping); 0 = MBPO's early stopping
  rollout_batch: int = 100_000  # branched rollouts started per model training round
  elite_draw: str = "row"  # which elite steps a rollout: row (MBPO: drawn per row
  # and step, every elite computed for every row) | block
  # (each step a random permutation deals the rollouts out
  # in equal blocks, one per elite; only it is computed)
  branch_schedule: tuple[int, ...] = (20, 100, 1, 15)  # model branch length: epochs a->b,
  # length x->y (1 epoch = 1000 env steps)
  model_retain_epochs: int = 1  # model data older than this many epochs is not sampled

  @classmethod
  def for_env(cls, env: str, **fields) -> "MBPOConfig":
    """MBPOConfig with MBPO's branch schedule on `env` (where it has one), under `fields`."""
    return cls(**{**BRANCH.get(env, {}), **fields})

  def check(self) -> None:
    positive(self, ("elites", "model_patience", "model_max_epochs", "rollout_batch"))
    positive(self, ("model_retain_epochs",))
    non_negative(self, ("model_epoch_steps", "model_fit_budget"))
    unit_interval(self, ("real_ratio",))
    one_of(self, "elite_draw", ELITE_DRAWS)
