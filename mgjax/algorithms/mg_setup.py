"""The state and the static setup of the `mg`, `mle` and `ppo` loop: `PPOState`,
`ModelState`, `MGState`, `Setup`, `setup(config, env, kind)` and
`init(setup, key, hparams)`. `mgjax.algorithms.mg` composes them with the stages.
"""

import dataclasses
import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
from flax import struct

from mgjax import envs
from mgjax.agents.ppo import ModelPPOConfig, PPOConfig, PPONetworks
from mgjax.algorithms.base import init_hparams
from mgjax.algorithms.mg_model import model_objective
from mgjax.buffer import ReplayBuffer, buffer_init, empty_row
from mgjax.config import Config, RunConfig
from mgjax.models.fitting import MGConfig, ModelConfig, ModelObjective
from mgjax.models.nll import nll_loss
from mgjax.nets import networks
from mgjax.nets.normalization import RunningStats, init_stats
from mgjax.optim import adam, set_learning_rate
from mgjax.types import Model, Params

SWEEPABLE = {
  "mg": (
    "learning_rate",
    "model_learning_rate",
    "mle_weight",
    "mg_max_grad_norm",
    "real_grad_ema",
    "clip_eps",
    "value_coef",
    "entropy_coef",
  ),
  "mle": ("learning_rate", "model_learning_rate", "clip_eps", "value_coef", "entropy_coef"),
  "ppo": ("learning_rate", "clip_eps", "value_coef", "entropy_coef"),
}


# ------------------------------------------------------------------------------ state
@struct.dataclass
class PPOState:
  """Everything that changes during a `ppo` run (one seed)."""

  agent_params: Params  # {"policy": θ, "value": ψ}
  agent_opt: optax.OptState
  obs_stats: RunningStats  # shared by policy and value
  env_state: Any  # brax State of the batched training envs
  key: jax.Array
  iteration: jax.Array
  env_steps: jax.Array
  hparams: dict[str, jax.Array]  # the algorithm's sweepable settings, as data


@struct.dataclass
class ModelState:
  """Everything that changes during an `mle` run (one seed): PPOState's fields, the model
  and the real buffer it is fitted on."""

  agent_params: Params
  agent_opt: optax.OptState
  model_params: Params  # φ
  model_opt: optax.OptState
  obs_stats: RunningStats  # shared by policy, value and model
  env_state: Any
  buffer: ReplayBuffer  # real transitions
  key: jax.Array
  iteration: jax.Array
  env_steps: jax.Array
  hparams: dict[str, jax.Array]


@struct.dataclass
class MGState(ModelState):
  """An `mg` run's state: ModelState's fields and the running average of g_R."""

  real_grad_avg: Params
  mg_opt: optax.OptState | None = None  # the MG term's own Adam state (mg_optimizer=separate)


# ------------------------------------------------------------------------------ setup
@dataclasses.dataclass(frozen=True)
class Setup:
  """The static parts of an mg/mle/ppo run, built once from the config."""

  env: envs.EnvInfo
  train_env: envs.TrainingEnv
  nets: PPONetworks
  model_net: networks.Network
  agent_optimizer: optax.GradientTransformation
  model_optimizer: optax.GradientTransformation
  run: RunConfig  # the config's parts that the loop reads
  ppo: PPOConfig
  fit: ModelConfig
  model_ppo: ModelPPOConfig
  mg: MGConfig
  kind: str  # "mg" | "mle" | "ppo": which of the three loops (a derived variant keeps its base's)
  hparam_defaults: tuple[tuple[str, float], ...]  # the sweepable settings' config values
  # (setup, state, g_R target) -> the ModelObjective of the MG steps; a variant may replace it
  objective: Callable[..., ModelObjective] = model_objective

  def model(self, stats: RunningStats) -> Model:
    return networks.make_model(self.model_net, stats, self.env.termination_fn, self.ppo.action_mode)

  def nll(self, stats: RunningStats):
    """The model's NLL loss (params, rows) -> scalar under the given statistics."""
    return functools.partial(
      nll_loss, net=self.model_net, stats=stats, action_mode=self.ppo.action_mode
    )


def setup(c: Config, info: envs.EnvInfo, kind: str = "mg") -> Setup:
  """The static parts of a `kind` run (mg, mle or ppo) of config `c` on env `info`."""
  return Setup(
    env=info,
    train_env=envs.TrainingEnv(info, c.num_envs, c.env_group),
    nets=PPONetworks(
      networks.make_policy_network(
        info.obs_size, info.action_size, c.policy_hidden, c.init_log_std
      ),
      networks.make_value_network(info.obs_size, c.value_hidden),
    ),
    model_net=networks.make_model_network(
      info.obs_size, info.action_size, c.model_hidden, c.ensemble_size
    ),
    agent_optimizer=adam(c.learning_rate, c.max_grad_norm),
    model_optimizer=adam(c.model_learning_rate),
    run=RunConfig.of(c),
    ppo=PPOConfig.of(c),
    fit=ModelConfig.of(c),
    model_ppo=ModelPPOConfig.of(c),
    mg=MGConfig.of(c),
    kind=kind,
    hparam_defaults=tuple((n, getattr(c, n)) for n in SWEEPABLE[kind]),
  )


def init(su: Setup, key: jax.Array, hparams: dict | None = None):
  """A fresh state (PPOState, ModelState or MGState); `hparams` overrides some of the
  sweepable settings."""
  hp = init_hparams(su.kind, dict(su.hparam_defaults), hparams)
  kp, kv, km, ke, key = jax.random.split(key, 5)
  agent = {"policy": su.nets.policy.init(kp), "value": su.nets.value.init(kv)}
  common = dict(
    obs_stats=init_stats(su.env.obs_size),
    env_state=su.train_env.reset(ke),
    key=key,
    iteration=jnp.zeros((), jnp.int32),
    env_steps=jnp.zeros((), jnp.int32),
    hparams=hp,
  )
  agent_opt = set_learning_rate(su.agent_optimizer.init(agent), hp["learning_rate"])
  if su.kind == "ppo":
    return PPOState(agent_params=agent, agent_opt=agent_opt, **common)
  model_params = su.model_net.init(km)
  model_opt = set_learning_rate(su.model_optimizer.init(model_params), hp["model_learning_rate"])
  buffer = buffer_init(empty_row(su.env.obs_size, su.env.action_size), su.run.buffer_size)
  parts = dict(
    agent_params=agent,
    agent_opt=agent_opt,
    model_params=model_params,
    model_opt=model_opt,
    buffer=buffer,
    **common,
  )
  if su.kind == "mle":
    return ModelState(**parts)
  mg_opt = None
  if su.mg.mg_optimizer == "separate":
    mg_opt = set_learning_rate(su.model_optimizer.init(model_params), hp["model_learning_rate"])
  return MGState(
    **parts, real_grad_avg=jax.tree.map(jnp.zeros_like, agent["policy"]), mg_opt=mg_opt
  )
