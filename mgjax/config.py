"""Run configuration: one frozen dataclass of every setting, and the checks that hold for
every algorithm. What an algorithm adds (its presets and its own checks) lives with the
algorithm; `mgjax.algorithms.make_config` applies both.
"""

import dataclasses
from typing import Any

from mgjax import envs
from mgjax.losses import ADVANTAGE_TRANSFORMS
from mgjax.model_gradient import ESTIMATORS, SIMILARITIES
from mgjax.nets.networks import ACTION_MODES

MG_STARTS = ("buffer", "batch")
MG_OPTIMIZERS = ("shared", "separate")
ELITE_DRAWS = ("row", "block")
# Names of earlier versions, still read from config.json, resume points and the CLI.
ALIASES = {"rollout_schedule": "branch_schedule"}


class ConfigError(ValueError):
  """A configuration value is invalid; the message names the field and the value."""


@dataclasses.dataclass(frozen=True)
class Config:
  """Everything a run depends on. Defaults: `mg` on MJX hopper, sized for a 2-core CPU."""

  # -- run
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
  # -- networks
  policy_hidden: tuple[int, ...] = (64, 64)
  value_hidden: tuple[int, ...] = (64, 64)
  model_hidden: tuple[int, ...] = (200, 200, 200)
  ensemble_size: int = 1  # dynamics-model members (uniform member per transition)
  action_mode: str = "clip"  # clip | tanh: how a Gaussian sample maps to [-1, 1]
  init_log_std: float = -0.5  # initial policy log-std
  # -- PPO (on real data for ppo, on model rollouts for mg/mle)
  discount: float = 0.99
  gae_lambda: float = 0.95
  clip_eps: float = 0.2
  ppo_epochs: int = 4
  num_minibatches: int = 4
  entropy_coef: float = 0.0
  value_coef: float = 0.5
  learning_rate: float = 3e-4  # policy and value
  max_grad_norm: float = 0.5
  # -- model fitting
  model_learning_rate: float = 1e-3
  buffer_size: int = 100_000  # real transitions kept for model fitting
  mle_steps: int = 100  # K_mle NLL steps per iteration
  mle_batch: int = 256
  mg_steps: int = 5  # K_mg model-gradient steps per iteration (mg only)
  mg_rollouts: int = 256  # N model rollouts per MG step
  mg_horizon: int = 10  # H of the MG rollouts
  similarity: str = "cosine"  # cosine | inner | l2
  estimator: str = "score"  # score | pathwise
  mle_weight: float = 1.0  # λ_mle: NLL weight inside MG steps (0 = pure MG)
  mg_max_grad_norm: float = 10.0  # clip the MG term's gradient to this norm (0 = off)
  real_grad_ema: float = 0.0  # MG target: running average of g_R over iterations with
  # this decay (0 = the latest batch's g_R alone)
  mg_start: str = "batch"  # MG rollout start states: batch (the latest real batch,
  # g_R's own states) | buffer (all real data)
  mg_optimizer: str = "shared"  # shared: the MG term's gradient joins the NLL's in one Adam
  # step | separate: the MG term takes its own Adam step, weighted by mg_weight
  mg_weight: float = 1.0  # w: weight of the MG term's (clipped) gradient, or of its step
  mg_advantages: str = "raw"  # advantages of g_R and ĝ_M alike: raw | centred | normalised
  # (PPO's per-batch convention)
  real_value_steps: int = 0  # mg, mle: Adam steps fitting a copy of V_ψ on each real batch's
  # λ-returns, whose advantages g_R then uses (0 = V_ψ as PPO fits it on model data)
  real_value_learning_rate: float = 1e-3  # Adam's learning rate of those steps
  real_grad_states: int = 0  # mbpo, mg-sac: real buffer states averaged in g_R, the MG
  # target (0 = mg_rollouts·mg_horizon, as many states as ĝ_M averages)
  # -- policy optimisation in the model (mg, mle)
  model_rollouts: int = 512  # branched rollouts per policy update, from buffer states
  model_horizon: int = 10  # their horizon
  model_updates: int = 4  # R: policy updates in the model per real iteration
  # -- mbpo, mg-sac (SAC on real + branched model data, Janner et al. 2019; presets in
  #    mgjax.algorithms.mbpo)
  sac_hidden: tuple[int, ...] = (256, 256)
  sac_learning_rate: float = 3e-4  # actor, critics and temperature
  sac_batch: int = 256  # SAC minibatch (real_ratio of it from real data)
  tau: float = 0.005  # Polyak rate of the target critics
  target_entropy: float = 0.0  # SAC entropy target; 0 = -action_size
  updates_per_step: int = 20  # G: SAC updates per real env step
  real_ratio: float = 0.05  # share of real transitions in each SAC minibatch
  exploration_steps: int = 5000  # initial uniform-random env steps before learning
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

  # ------------------------------------------------------------------ derived sizes
  @property
  def batch_steps(self) -> int:
    """Real env steps per iteration per run."""
    return self.num_envs * self.rollout_length

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


def fail(field: str, value: Any, why: str) -> None:
  """Raises ConfigError "field=value: why"."""
  raise ConfigError(f"{field}={value!r}: {why}")


def check_common(config: Config) -> None:
  """Checks the fields every algorithm reads; raises ConfigError naming the first bad field
  and its value. (The algorithm name, and what only some algorithms read, are checked by
  `mgjax.algorithms.validate`.)"""
  c = config
  if not envs.is_known(c.env):
    fail("env", c.env, "unknown environment; choose one of " + ", ".join(envs.env_names()))
  for name in (
    "total_steps",
    "num_envs",
    "rollout_length",
    "eval_every",
    "num_eval_envs",
    "ensemble_size",
    "ppo_epochs",
    "num_minibatches",
    "buffer_size",
    "mle_batch",
    "mg_rollouts",
    "mg_horizon",
    "model_rollouts",
    "model_horizon",
    "model_updates",
    "sac_batch",
    "updates_per_step",
    "elites",
    "model_patience",
    "model_max_epochs",
    "rollout_batch",
    "model_retain_epochs",
  ):
    if getattr(c, name) <= 0:
      fail(name, getattr(c, name), "must be positive")
  for name in (
    "env_group",
    "mle_steps",
    "mg_steps",
    "episode_length",
    "distractor_dims",
    "exploration_steps",
    "model_epoch_steps",
    "model_fit_budget",
    "real_value_steps",
  ):
    if getattr(c, name) < 0:
      fail(name, getattr(c, name), "must be non-negative")
  for name in (
    "learning_rate",
    "model_learning_rate",
    "clip_eps",
    "max_grad_norm",
    "sac_learning_rate",
    "real_value_learning_rate",
  ):
    if not getattr(c, name) > 0:
      fail(name, getattr(c, name), "must be positive")
  for name in ("discount", "gae_lambda", "tau", "real_ratio"):
    if not 0.0 <= getattr(c, name) <= 1.0:
      fail(name, getattr(c, name), "must lie in [0, 1]")
  if c.real_grad_states < 0:
    fail(
      "real_grad_states", c.real_grad_states, "must be non-negative (0 = mg_rollouts·mg_horizon)"
    )
  if not 0.0 <= c.real_grad_ema < 1.0:
    fail("real_grad_ema", c.real_grad_ema, "must lie in [0, 1)")
  for name in ("mle_weight", "entropy_coef", "value_coef", "mg_max_grad_norm", "mg_weight"):
    if getattr(c, name) < 0:
      fail(name, getattr(c, name), "must be non-negative")
  for name in ("policy_hidden", "value_hidden", "model_hidden", "sac_hidden"):
    if not getattr(c, name) or any(h <= 0 for h in getattr(c, name)):
      fail(name, getattr(c, name), "must be one or more positive layer sizes")
  if c.similarity not in SIMILARITIES:
    fail("similarity", c.similarity, f"choose one of {', '.join(SIMILARITIES)}")
  if c.estimator not in ESTIMATORS:
    fail("estimator", c.estimator, f"choose one of {', '.join(ESTIMATORS)}")
  if c.env_group and c.num_envs % c.env_group:
    fail("env_group", c.env_group, f"does not divide num_envs = {c.num_envs}")
  if c.elite_draw not in ELITE_DRAWS:
    fail("elite_draw", c.elite_draw, f"choose one of {', '.join(ELITE_DRAWS)}")
  if c.mg_optimizer not in MG_OPTIMIZERS:
    fail("mg_optimizer", c.mg_optimizer, f"choose one of {', '.join(MG_OPTIMIZERS)}")
  if c.mg_advantages not in ADVANTAGE_TRANSFORMS:
    fail("mg_advantages", c.mg_advantages, f"choose one of {', '.join(ADVANTAGE_TRANSFORMS)}")
  if c.mg_start not in MG_STARTS:
    fail("mg_start", c.mg_start, f"choose one of {', '.join(MG_STARTS)}")
  if c.action_mode not in ACTION_MODES:
    fail("action_mode", c.action_mode, f"choose one of {', '.join(ACTION_MODES)}")
