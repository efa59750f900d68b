"""Run configuration: one frozen dataclass, validated in one place."""
import dataclasses
from typing import Any

ALGOS = ("mg", "mle", "ppo", "mbpo", "mg-sac")
SAC_ALGOS = ("mbpo", "mg-sac")  # SAC on real + branched model data (mgjax.mbpo)
MG_STARTS = ("buffer", "batch")


class ConfigError(ValueError):
  """A configuration value is invalid; the message names the field and the value."""


@dataclasses.dataclass(frozen=True)
class Config:
  """Everything a run depends on. Defaults: `mg` on MJX hopper, sized for a 2-core CPU."""
  # -- run
  algo: str = "mg"                  # mg | mle | ppo | mbpo | mg-sac
  env: str = "hopper"               # any name of mgjax.envs.ENV_NAMES or a brax env
  backend: str = "mjx"              # brax physics backend
  total_steps: int = 100_000        # real env steps per seed (rounded to whole eval chunks)
  num_envs: int = 32                # parallel training envs per seed
  rollout_length: int = 32          # env steps per env per iteration
  episode_length: int = 0           # time limit; 0 = the env's default
  eval_every: int = 10              # iterations between evaluations (one jitted chunk)
  num_eval_envs: int = 8            # deterministic-policy episodes per evaluation
  # -- networks
  policy_hidden: tuple[int, ...] = (64, 64)
  value_hidden: tuple[int, ...] = (64, 64)
  model_hidden: tuple[int, ...] = (200, 200, 200)
  ensemble_size: int = 1            # dynamics-model members (uniform member per transition)
  action_mode: str = "clip"         # clip | tanh: how a Gaussian sample maps to [-1, 1]
  init_log_std: float = -0.5        # initial policy log-std
  # -- PPO (on real data for ppo, on model rollouts for mg/mle)
  discount: float = 0.99
  gae_lambda: float = 0.95
  clip_eps: float = 0.2
  ppo_epochs: int = 4
  num_minibatches: int = 4
  entropy_coef: float = 0.0
  value_coef: float = 0.5
  learning_rate: float = 3e-4       # policy and value
  max_grad_norm: float = 0.5
  # -- model fitting
  model_learning_rate: float = 1e-3
  buffer_size: int = 100_000        # real transitions kept for model fitting
  mle_steps: int = 100              # K_mle NLL steps per iteration
  mle_batch: int = 256
  mg_steps: int = 5                 # K_mg model-gradient steps per iteration (mg only)
  mg_rollouts: int = 256            # N model rollouts per MG step
  mg_horizon: int = 10              # H of the MG rollouts
  similarity: str = "cosine"        # cosine | inner | l2
  estimator: str = "score"          # score | pathwise
  mle_weight: float = 1.0           # λ_mle: NLL weight inside MG steps (0 = pure MG)
  mg_max_grad_norm: float = 10.0    # clip the MG term's gradient to this norm (0 = off)
  real_grad_ema: float = 0.0        # MG target: running average of g_R over iterations with
                                    # this decay (0 = the latest batch's g_R alone)
  mg_start: str = "batch"           # MG rollout start states: batch (the latest real batch,
                                    # g_R's own states) | buffer (all real data)
  # -- policy optimisation in the model (mg, mle)
  model_rollouts: int = 512         # branched rollouts per policy update, from buffer states
  model_horizon: int = 10           # their horizon
  model_updates: int = 4            # R: policy updates in the model per real iteration
  # -- mbpo (SAC on real + branched model data, Janner et al. 2019; see MBPO_PRESETS)
  sac_hidden: tuple[int, ...] = (256, 256)
  sac_learning_rate: float = 3e-4   # actor, critics and temperature
  sac_batch: int = 256              # SAC minibatch (real_ratio of it from real data)
  tau: float = 0.005                # Polyak rate of the target critics
  target_entropy: float = 0.0       # SAC entropy target; 0 = -action_size
  updates_per_step: int = 20        # G: SAC updates per real env step
  real_ratio: float = 0.05          # share of real transitions in each SAC minibatch
  exploration_steps: int = 5000     # initial uniform-random env steps before learning
  elites: int = 5                   # ensemble members used for rollouts (best held-out NLL)
  model_patience: int = 5           # stop model training after this many epochs without
                                    # a 1% held-out improvement of any member
  model_max_epochs: int = 50        # cap on model epochs per training round
  model_epoch_steps: int = 0        # gradient steps per model epoch; 0 = one pass over data
  rollout_batch: int = 100_000      # branched rollouts started per model training round
  rollout_schedule: tuple[int, ...] = (20, 100, 1, 15)  # epochs a->b, length x->y (1 epoch
                                    # = 1000 env steps)
  model_retain_epochs: int = 1      # model data older than this many epochs is not sampled

  # ------------------------------------------------------------------ derived sizes
  @property
  def batch_steps(self) -> int:
    """Real env steps per iteration per seed."""
    return self.num_envs * self.rollout_length

  @property
  def initial_steps(self) -> int:
    """Env steps taken before the first iteration (mbpo's random exploration)."""
    return self.exploration_steps if self.uses_sac else 0

  @property
  def num_chunks(self) -> int:
    return max(1, round((self.total_steps - self.initial_steps)
                        / (self.batch_steps * self.eval_every)))

  @property
  def num_iterations(self) -> int:
    return self.num_chunks * self.eval_every

  @property
  def uses_model(self) -> bool:
    """Whether the algorithm optimises its policy by PPO in a learned model."""
    return self.algo in ("mg", "mle")

  @property
  def uses_sac(self) -> bool:
    """Whether the algorithm is MBPO's loop (mbpo, and mg-sac, which adds MG model steps)."""
    return self.algo in SAC_ALGOS

  @property
  def env_steps(self) -> int:
    """Real env steps per seed that a run takes in all."""
    return self.initial_steps + self.num_iterations * self.batch_steps

  def to_dict(self) -> dict[str, Any]:
    d = dataclasses.asdict(self)
    d["resolved"] = {"batch_steps": self.batch_steps, "num_iterations": self.num_iterations,
                     "env_steps": self.env_steps}
    return d

  @classmethod
  def from_dict(cls, d: dict[str, Any]) -> "Config":
    """The Config of `to_dict` (or of config.json: lists become tuples again), validated."""
    fields = {f.name: tuple(d[f.name]) if isinstance(f.default, tuple) else d[f.name]
              for f in dataclasses.fields(cls) if f.name in d}
    return validate(cls(**fields))


# Numeric settings that live in the train state as data (`TrainState.hparams`), so one
# program can vmap a sweep over them like seeds (`experiment.run(..., sweep=...)`).
SWEEPABLE: dict[str, tuple[str, ...]] = {
    "mg": ("learning_rate", "model_learning_rate", "mle_weight", "mg_max_grad_norm",
           "real_grad_ema", "clip_eps", "value_coef", "entropy_coef"),
    "mle": ("learning_rate", "model_learning_rate", "clip_eps", "value_coef", "entropy_coef"),
    "ppo": ("learning_rate", "clip_eps", "value_coef", "entropy_coef"),
    "mbpo": ("sac_learning_rate", "model_learning_rate", "tau"),
    "mg-sac": ("sac_learning_rate", "model_learning_rate", "tau", "mle_weight",
               "mg_max_grad_norm"),
}


# MBPO's published settings (Janner et al. 2019, appendix C and the authors' configs):
# one env, a model round every 250 steps, epochs of 1000 steps, a 7-member ensemble of
# 4x200 swish layers with 5 elites, 400 model rollouts per env step (100k per round),
# SAC 2x256 with G updates per env step and real_ratio 0.05. Rollout-length schedules and
# entropy targets per env; humanoid uses 400-unit model layers and rounds every 1000 steps.
_MBPO_COMMON = {"num_envs": 1, "rollout_length": 250, "eval_every": 4, "ensemble_size": 7,
                "model_hidden": (200, 200, 200, 200), "buffer_size": 1_000_000,
                "mle_batch": 256, "model_learning_rate": 1e-3}
MBPO_PRESETS: dict[str, dict[str, Any]] = {
    "hopper": {"target_entropy": -1.0, "rollout_schedule": (20, 100, 1, 15)},
    "walker2d": {"target_entropy": -3.0, "rollout_schedule": (20, 100, 1, 1)},
    "halfcheetah": {"target_entropy": -3.0, "rollout_schedule": (20, 100, 1, 1),
                    "updates_per_step": 40},
    "ant": {"target_entropy": -4.0, "rollout_schedule": (20, 100, 1, 25)},
    "humanoid": {"target_entropy": -2.0, "rollout_schedule": (20, 300, 1, 25),
                 "rollout_length": 1000, "eval_every": 1, "model_retain_epochs": 5,
                 "model_hidden": (400, 400, 400, 400)},
}


# mg-sac runs MBPO's loop with its settings; its MG steps differentiate through the
# reparameterised ensemble and tanh-Gaussian actor (SAC's actor loss is smooth in the state).
MG_SAC_PRESET: dict[str, Any] = {"estimator": "pathwise"}


def preset(algo: str, env: str) -> dict[str, Any]:
  """Defaults an algorithm uses on an env where they differ from Config's (mbpo, mg-sac)."""
  if algo not in SAC_ALGOS:
    return {}
  extra = MG_SAC_PRESET if algo == "mg-sac" else {}
  return {**_MBPO_COMMON, **MBPO_PRESETS.get(env, {}), **extra}


def make_config(**fields: Any) -> Config:
  """Config with the algorithm's per-env preset under the given fields, validated."""
  base = preset(fields.get("algo", Config.algo), fields.get("env", Config.env))
  try:
    return validate(Config(**{**base, **fields}))
  except TypeError as e:  # unknown field name
    raise ConfigError(str(e)) from None


def _is_brax_env(name: str) -> bool:
  import brax.envs
  return name in brax.envs._envs  # brax's registry of environment classes


def _fail(field: str, value: Any, why: str) -> None:
  raise ConfigError(f"{field}={value!r}: {why}")


def validate(config: Config) -> Config:
  """Checks every field; raises ConfigError naming the first bad field and its value."""
  from mgjax.model_gradient import ESTIMATORS, SIMILARITIES  # noqa: avoid import cycle
  from mgjax.networks import ACTION_MODES
  from mgjax import envs

  c = config
  if c.algo not in ALGOS:
    _fail("algo", c.algo, f"unknown algorithm; choose one of {', '.join(ALGOS)}")
  if c.env not in envs.ENV_NAMES and not _is_brax_env(c.env):
    _fail("env", c.env, "unknown environment; choose one of " + ", ".join(envs.ENV_NAMES))
  for name in ("total_steps", "num_envs", "rollout_length", "eval_every", "num_eval_envs",
               "ensemble_size", "ppo_epochs", "num_minibatches", "buffer_size", "mle_batch",
               "mg_rollouts", "mg_horizon", "model_rollouts", "model_horizon",
               "model_updates", "sac_batch", "updates_per_step", "elites",
               "model_patience", "model_max_epochs", "rollout_batch",
               "model_retain_epochs"):
    if getattr(c, name) <= 0:
      _fail(name, getattr(c, name), "must be positive")
  for name in ("mle_steps", "mg_steps", "episode_length", "exploration_steps",
               "model_epoch_steps"):
    if getattr(c, name) < 0:
      _fail(name, getattr(c, name), "must be non-negative")
  for name in ("learning_rate", "model_learning_rate", "clip_eps", "max_grad_norm",
               "sac_learning_rate"):
    if not getattr(c, name) > 0:
      _fail(name, getattr(c, name), "must be positive")
  for name in ("discount", "gae_lambda", "tau", "real_ratio"):
    if not 0.0 <= getattr(c, name) <= 1.0:
      _fail(name, getattr(c, name), "must lie in [0, 1]")
  if not 0.0 <= c.real_grad_ema < 1.0:
    _fail("real_grad_ema", c.real_grad_ema, "must lie in [0, 1)")
  for name in ("mle_weight", "entropy_coef", "value_coef", "mg_max_grad_norm"):
    if getattr(c, name) < 0:
      _fail(name, getattr(c, name), "must be non-negative")
  for name in ("policy_hidden", "value_hidden", "model_hidden", "sac_hidden"):
    if not getattr(c, name) or any(h <= 0 for h in getattr(c, name)):
      _fail(name, getattr(c, name), "must be one or more positive layer sizes")
  if c.similarity not in SIMILARITIES:
    _fail("similarity", c.similarity, f"choose one of {', '.join(SIMILARITIES)}")
  if c.estimator not in ESTIMATORS:
    _fail("estimator", c.estimator, f"choose one of {', '.join(ESTIMATORS)}")
  if c.mg_start not in MG_STARTS:
    _fail("mg_start", c.mg_start, f"choose one of {', '.join(MG_STARTS)}")
  if c.action_mode not in ACTION_MODES:
    _fail("action_mode", c.action_mode, f"choose one of {', '.join(ACTION_MODES)}")
  if c.total_steps < c.initial_steps + c.batch_steps * c.eval_every:
    _fail("total_steps", c.total_steps,
          f"smaller than one evaluation chunk (num_envs*rollout_length*eval_every = "
          f"{c.batch_steps * c.eval_every})"
          + (f" after exploration_steps = {c.initial_steps}" if c.initial_steps else ""))
  # Batch consistency: PPO minibatches must split the batch they are cut from.
  ppo_batch = c.model_rollouts * c.model_horizon if c.uses_model else c.batch_steps
  ppo_field = "model_rollouts*model_horizon" if c.uses_model else "num_envs*rollout_length"
  if not c.uses_sac and ppo_batch % c.num_minibatches:
    _fail("num_minibatches", c.num_minibatches, f"does not divide {ppo_field} = {ppo_batch}")
  if c.uses_model:
    if c.buffer_size < c.batch_steps:
      _fail("buffer_size", c.buffer_size,
            f"smaller than one iteration's batch (num_envs*rollout_length = {c.batch_steps})")
    if c.mle_batch > c.buffer_size:
      _fail("mle_batch", c.mle_batch, f"larger than buffer_size = {c.buffer_size}")
  if c.mg_rollouts < 2 and c.algo in ("mg", "mg-sac") and c.estimator == "score":
    _fail("mg_rollouts", c.mg_rollouts, "the score estimator's baseline needs at least 2")
  if c.uses_sac:
    _validate_mbpo(c)
  return c


def _validate_mbpo(c: Config) -> None:
  if c.elites > c.ensemble_size:
    _fail("elites", c.elites, f"more than ensemble_size = {c.ensemble_size}")
  if len(c.rollout_schedule) != 4:
    _fail("rollout_schedule", c.rollout_schedule,
          "needs 4 integers: from_epoch,to_epoch,min_length,max_length")
  a, b, lo, hi = c.rollout_schedule
  if not (0 <= a < b and 1 <= lo <= hi):
    _fail("rollout_schedule", c.rollout_schedule,
          "needs 0 <= from_epoch < to_epoch and 1 <= min_length <= max_length")
  if c.buffer_size < c.exploration_steps + c.batch_steps:
    _fail("buffer_size", c.buffer_size, "smaller than exploration_steps + one iteration")
