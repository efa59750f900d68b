"""Run configuration: one frozen dataclass, validated in one place."""
import dataclasses
from typing import Any

ALGOS = ("mg", "mle", "ppo")


class ConfigError(ValueError):
  """A configuration value is invalid; the message names the field and the value."""


@dataclasses.dataclass(frozen=True)
class Config:
  """Everything a run depends on. Defaults: `mg` on MJX hopper, sized for a 2-core CPU."""
  # -- run
  algo: str = "mg"                  # mg | mle | ppo
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
  # -- policy optimisation in the model (mg, mle)
  model_rollouts: int = 512         # branched rollouts per policy update, from buffer states
  model_horizon: int = 10           # their horizon
  model_updates: int = 4            # R: policy updates in the model per real iteration

  # ------------------------------------------------------------------ derived sizes
  @property
  def batch_steps(self) -> int:
    """Real env steps per iteration per seed."""
    return self.num_envs * self.rollout_length

  @property
  def num_chunks(self) -> int:
    return max(1, round(self.total_steps / (self.batch_steps * self.eval_every)))

  @property
  def num_iterations(self) -> int:
    return self.num_chunks * self.eval_every

  @property
  def uses_model(self) -> bool:
    return self.algo in ("mg", "mle")

  def to_dict(self) -> dict[str, Any]:
    d = dataclasses.asdict(self)
    d["resolved"] = {"batch_steps": self.batch_steps, "num_iterations": self.num_iterations,
                     "env_steps": self.num_iterations * self.batch_steps}
    return d


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
               "model_updates"):
    if getattr(c, name) <= 0:
      _fail(name, getattr(c, name), "must be positive")
  for name in ("mle_steps", "mg_steps", "episode_length"):
    if getattr(c, name) < 0:
      _fail(name, getattr(c, name), "must be non-negative")
  for name in ("learning_rate", "model_learning_rate", "clip_eps", "max_grad_norm"):
    if not getattr(c, name) > 0:
      _fail(name, getattr(c, name), "must be positive")
  for name in ("discount", "gae_lambda"):
    if not 0.0 <= getattr(c, name) <= 1.0:
      _fail(name, getattr(c, name), "must lie in [0, 1]")
  for name in ("mle_weight", "entropy_coef", "value_coef", "mg_max_grad_norm"):
    if getattr(c, name) < 0:
      _fail(name, getattr(c, name), "must be non-negative")
  if any(h <= 0 for h in c.policy_hidden + c.value_hidden + c.model_hidden):
    _fail("hidden sizes", (c.policy_hidden, c.value_hidden, c.model_hidden), "must be positive")
  if c.similarity not in SIMILARITIES:
    _fail("similarity", c.similarity, f"choose one of {', '.join(SIMILARITIES)}")
  if c.estimator not in ESTIMATORS:
    _fail("estimator", c.estimator, f"choose one of {', '.join(ESTIMATORS)}")
  if c.action_mode not in ACTION_MODES:
    _fail("action_mode", c.action_mode, f"choose one of {', '.join(ACTION_MODES)}")
  if c.total_steps < c.batch_steps * c.eval_every:
    _fail("total_steps", c.total_steps,
          f"smaller than one evaluation chunk (num_envs*rollout_length*eval_every = "
          f"{c.batch_steps * c.eval_every})")
  # Batch consistency: PPO minibatches must split the batch they are cut from.
  ppo_batch = c.model_rollouts * c.model_horizon if c.uses_model else c.batch_steps
  ppo_field = "model_rollouts*model_horizon" if c.uses_model else "num_envs*rollout_length"
  if ppo_batch % c.num_minibatches:
    _fail("num_minibatches", c.num_minibatches, f"does not divide {ppo_field} = {ppo_batch}")
  if c.uses_model:
    if c.buffer_size < c.batch_steps:
      _fail("buffer_size", c.buffer_size,
            f"smaller than one iteration's batch (num_envs*rollout_length = {c.batch_steps})")
    if c.mle_batch > c.buffer_size:
      _fail("mle_batch", c.mle_batch, f"larger than buffer_size = {c.buffer_size}")
    if c.mg_rollouts < 2 and c.algo == "mg" and c.estimator == "score":
      _fail("mg_rollouts", c.mg_rollouts, "the score estimator's baseline needs at least 2")
  return c
