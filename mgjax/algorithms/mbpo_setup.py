"""The state and the setup of `mbpo` and `mg-sac` (`mgjax.algorithms.mbpo` names them):
`MBPOState`, `MBPOSetup`, `setup` and `init`."""

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct

from mgjax import envs
from mgjax.agents import sac
from mgjax.algorithms.base import init_hparams
from mgjax.algorithms.sac import SACSetup, explore, init_sac
from mgjax.algorithms.sac import setup as sac_setup
from mgjax.buffer import ReplayBuffer, buffer_init, empty_row
from mgjax.config import Config
from mgjax.models.ensemble import EnsembleFit
from mgjax.models.fitting import MGConfig
from mgjax.models.mbpo_config import MBPOConfig
from mgjax.nets import networks
from mgjax.nets.normalization import RunningStats, init_stats, update_stats
from mgjax.optim import adam, set_learning_rate
from mgjax.types import Params, Policy

EPOCH_LENGTH = 1000  # env steps per MBPO epoch (the unit of the branch schedule)
SWEEPABLE = {
  "mbpo": ("sac_learning_rate", "model_learning_rate", "tau"),
  "mg-sac": ("sac_learning_rate", "model_learning_rate", "tau", "mle_weight", "mg_max_grad_norm"),
}


@struct.dataclass
class MBPOState:
  """Everything that changes during an mbpo run (one seed)."""

  sac: sac.SACParams
  sac_opt: sac.SACOptState
  model_params: Params
  model_opt: optax.OptState
  elites: jax.Array  # [elites] member indices used for rollouts
  obs_stats: RunningStats  # normalisation of the model's inputs and outputs
  env_state: Any
  buffer: ReplayBuffer  # real transitions
  model_buffer: ReplayBuffer  # model transitions
  key: jax.Array
  iteration: jax.Array
  env_steps: jax.Array
  hparams: dict[str, jax.Array]  # the algorithm's sweepable settings, as data


@dataclasses.dataclass(frozen=True)
class MBPOSetup(SACSetup):
  """The static parts of an mbpo/mg-sac run, built once from the config: sac's, the
  ensemble and its fit, and the branched rollouts."""

  model_net: networks.Network
  model_optimizer: optax.GradientTransformation
  fit: EnsembleFit
  mbpo: MBPOConfig  # the branched rollouts (and the fit's settings, as `fit` holds them)
  mg: MGConfig  # mg-sac's MG stage, and both algorithms' alignment diagnostic
  kind: str  # "mbpo" | "mg-sac" (a derived variant keeps its base's)

  @property
  def rounds_per_epoch(self) -> int:
    return max(1, round(EPOCH_LENGTH / (self.run.num_envs * self.run.rollout_length)))

  @property
  def model_buffer_capacity(self) -> int:
    return (
      self.mbpo.rollout_batch
      * self.mbpo.branch_schedule[3]
      * self.rounds_per_epoch
      * self.mbpo.model_retain_epochs
    )

  def model(self, stats: RunningStats):
    # SAC actions are already in [-1, 1]: "clip" leaves them unchanged.
    return networks.make_model(self.model_net, stats, self.env.termination_fn, "clip")

  def policy(self) -> Policy:
    """The actor as an `mgjax.Policy` over tanh-squashed actions (reparameterised sample)."""
    return sac.tanh_gaussian_policy(self.actor_net.apply)


def setup(c: Config, info: envs.EnvInfo, kind: str = "mbpo") -> MBPOSetup:
  """The static parts of a `kind` run (mbpo or mg-sac) of config `c` on env `info`."""
  base = sac_setup(c, info)
  shared = {f.name: getattr(base, f.name) for f in dataclasses.fields(base)}
  shared["hparam_defaults"] = tuple((n, getattr(c, n)) for n in SWEEPABLE[kind])
  return MBPOSetup(
    **shared,
    model_net=networks.make_model_network(
      info.obs_size, info.action_size, c.model_hidden, c.ensemble_size
    ),
    model_optimizer=adam(c.model_learning_rate),
    fit=EnsembleFit(
      c.ensemble_size,
      c.mle_batch,
      c.model_epoch_steps,
      c.model_patience,
      c.model_max_epochs,
      c.elites,
      c.model_fit_budget,
    ),
    mbpo=dataclasses.replace(MBPOConfig.of(c), branch_schedule=tuple(c.branch_schedule)),
    mg=MGConfig.of(c),
    kind=kind,
  )


def init(su: MBPOSetup, key: jax.Array, hparams: dict | None = None) -> MBPOState:
  """Fresh parameters and buffers, then `exploration_steps` uniform-random env steps;
  `hparams` overrides some of the sweepable settings."""
  info = su.env
  hp = init_hparams(su.kind, dict(su.hparam_defaults), hparams)
  ks, km, ke, kx, key = jax.random.split(key, 5)
  params, sac_opt = init_sac(su, ks, hp)
  model_params = su.model_net.init(km)
  example = empty_row(info.obs_size, info.action_size)
  model_opt = set_learning_rate(su.model_optimizer.init(model_params), hp["model_learning_rate"])
  state = MBPOState(
    sac=params,
    sac_opt=sac_opt,
    model_params=model_params,
    model_opt=model_opt,
    elites=jnp.arange(su.fit.elites),
    obs_stats=init_stats(info.obs_size),
    env_state=su.train_env.reset(ke),
    buffer=buffer_init(example, su.run.buffer_size),
    model_buffer=buffer_init(example, su.model_buffer_capacity),
    key=key,
    iteration=jnp.zeros((), jnp.int32),
    env_steps=jnp.zeros((), jnp.int32),
    hparams=hp,
  )
  state, obs = explore(su, state, kx)
  return state.replace(obs_stats=update_stats(state.obs_stats, obs))
