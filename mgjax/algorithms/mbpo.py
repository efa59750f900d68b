"""`mbpo` (Janner et al. 2019, arXiv:1906.08253) and `mg-sac`: SAC on real and branched model data.

Before the first iteration `exploration_steps` uniform-random env steps fill the real
buffer. One iteration covers num_envs·rollout_length real env steps (MBPO: 1·250):
  1. `fit_ensemble`: the probabilistic ensemble is trained by NLL on the real buffer, one
     epoch at a time, until no member improves its held-out NLL by 1% for
     `model_patience` epochs; each member keeps its best snapshot and the `elites` best
     members generate rollouts.
  2. `branched_rollouts`: `rollout_batch` rollouts of length k(epoch) (`branch_schedule`) start
     from real states, act with the current actor and step a random elite per transition
     (`elite_step`); they go to the model buffer, of which only the last
     `model_retain_epochs` epochs are sampled.
  3. `collect_and_update`: each real env step is stored and followed by
     updates_per_step·num_envs SAC updates on minibatches that mix `real_ratio` real rows
     with model rows.
`--algo mg-sac` is the same loop with the MG model objective put on SAC's actor: after each
`fit_ensemble`, `fit_model_mg` takes `mg_steps` steps of
    L(φ) = −S-surrogate(ĝ_M(φ), g_R) + mle_weight · NLL(φ),
where g_R is the actor-loss gradient on real buffer states and ĝ_M the same gradient on the
states of `mg_horizon`-step elite rollouts from them (`mgjax.actor_model_gradient_loss`).
Both algorithms log cos(ĝ_M, g_R) of the fitted ensemble each round (`model_grad_cosine`).
"""

import dataclasses
import sys
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct

from mgjax import envs
from mgjax.agents import sac
from mgjax.algorithms.base import (
  Algorithm,
  Spec,
  init_hparams,
  inline,
  loop_algorithm,
  mean_episode_return,
)
from mgjax.algorithms.mbpo_rollouts import (  # noqa: F401  (the model-data stages, part of this module's API)
  branch_length,
  branched_rollouts,
  elite_step,
  rollout_step_bytes,
  sac_batch,
  transients,
)
from mgjax.algorithms.mg_sac_model import (  # noqa: F401
  alignment_ceiling,
  fit_model_mg,
  mg_loss,
  real_actor_gradient,
)

# alignment_ceiling and real_actor_gradient are part of this module's API (the MG stage).
# The SAC loop's stages are sac's; env_step and sample_actions are used through this module too.
from mgjax.algorithms.sac import (  # noqa: F401
  SACSetup,
  as_transition,
  collect_and_update,
  env_step,
  evaluate,
  explore,
  init_sac,
  make_policy,
  policy_params,
  sac_preset,
  sample_actions,
)
from mgjax.algorithms.sac import setup as sac_setup
from mgjax.buffer import (
  ReplayBuffer,
  buffer_init,
  empty_row,
)
from mgjax.config import Config, fail
from mgjax.models.ensemble import EnsembleFit, fit_ensemble
from mgjax.models.fitting import MG_FIT_METRICS, MGConfig, ModelConfig
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
METRICS = (
  "train_return",
  "model_grad_cosine",
  "model_nll",
  "entropy",
  "critic_loss",
  "actor_loss",
  "alpha",
  "q_mean",
  "model_epochs",
  "branch_length",
)


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


# ------------------------------------------------------------------------------ stages
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


def fit_model(su: MBPOSetup, state: MBPOState, key: jax.Array):
  """`fit_ensemble` on the real buffer -> (state with the best members and the elites,
  {"model_nll", "model_epochs"})."""
  params, opt, elites, metrics = fit_ensemble(
    state.model_params,
    state.model_opt,
    state.buffer,
    state.obs_stats,
    key,
    net=su.model_net,
    optimizer=su.model_optimizer,
    fit=su.fit,
  )
  return state.replace(model_params=params, model_opt=opt, elites=elites), metrics


# ------------------------------------------------------------------------------ the loop
def act_and_update(
  su: MBPOSetup, state: MBPOState, key: jax.Array, reset_key: jax.Array, length: jax.Array
):
  """rollout_length env steps, each followed by updates_per_step·num_envs SAC updates on
  mixed real/model minibatches (the model rows drawn among the newest of `length`-step
  branches) -> (state, SAC metrics, observed obs). `reset_key` refreshes the envs' resets."""
  window = su.mbpo.rollout_batch * length * su.rounds_per_epoch * su.mbpo.model_retain_epochs
  state = state.replace(env_state=su.train_env.refresh_resets(state.env_state, reset_key))
  mixed = lambda s, k: sac_batch(
    s.buffer, s.model_buffer, k, window, batch_size=su.sac.sac_batch, real_ratio=su.mbpo.real_ratio
  )
  return collect_and_update(su, state, key, mixed)


def iteration(su: MBPOSetup, state: MBPOState, stage=inline):
  """Model round (fit, elites, mg-sac's MG steps, rollouts) then rollout_length env steps
  with SAC updates -> (state, per-iteration metrics). Each stage runs through
  `stage(name, fn, *args)`."""
  key, fkey, rkey, ckey, ekey = jax.random.split(state.key, 5)
  epoch = (state.env_steps - su.sac.exploration_steps) // EPOCH_LENGTH
  length = branch_length(epoch, su.mbpo.branch_schedule)
  state, metrics = stage("model_fitting", fit_model, su, state, fkey)
  # Keys of the MG stage and the diagnostic come from fold_in, leaving mbpo's stream as it was.
  if su.kind == "mg-sac" and su.mg.mg_steps:
    state, mg_metrics = stage("mg_steps", fit_model_mg, su, state, jax.random.fold_in(state.key, 1))
    metrics.update(mg_metrics)
  _, alignment = stage(
    "alignment", mg_loss, su, state, state.model_params, jax.random.fold_in(state.key, 2)
  )
  metrics["model_grad_cosine"] = alignment["cosine"]  # computed, not optimised, for mbpo
  state = stage("rollouts", branched_rollouts, su, state.replace(key=key), rkey, length)
  state, sac_metrics, obs = stage("act_and_update", act_and_update, su, state, ckey, ekey, length)
  state = state.replace(obs_stats=update_stats(state.obs_stats, obs), iteration=state.iteration + 1)
  metrics.update(
    sac_metrics,
    branch_length=length,
    env_steps=state.env_steps,
    train_return=mean_episode_return(state.env_state),
  )
  return state, metrics


# ------------------------------------------------------------------------------ for the runner
# MBPO's published settings (Janner et al. 2019, appendix C and the authors' configs):
# SAC's (`sac_preset`: one env, a model round every 250 steps, epochs of 1000 steps, the
# entropy target per env) and a 7-member ensemble of 4x200 swish layers with 5 elites,
# 400 model rollouts per env step (100k per round), G SAC updates per env step with
# real_ratio 0.05. Branch-length schedules per env (`MBPOConfig.for_env`); halfcheetah takes
# 40 SAC updates per env step, humanoid 400-unit model layers.
_MODEL_COMMON = {
  "ensemble_size": 7,
  "model_hidden": (200, 200, 200, 200),
  "mle_batch": 256,
  "model_learning_rate": 1e-3,
}
MBPO_OTHER_PRESETS: dict[str, dict[str, Any]] = {
  "halfcheetah": {"updates_per_step": 40},
  "humanoid": {"model_hidden": (400, 400, 400, 400)},
}
# mg-sac runs MBPO's loop with its settings; its MG steps differentiate through the
# reparameterised ensemble and tanh-Gaussian actor (SAC's actor loss is smooth in the state).
MG_SAC_PRESET: dict[str, Any] = {"estimator": "pathwise"}


def preset(env: str) -> dict[str, Any]:
  """mbpo's defaults on `env` where they differ from Config's."""
  return {
    **sac_preset(env),
    **_MODEL_COMMON,
    **MBPOConfig.for_env(env).changed(),
    **MBPO_OTHER_PRESETS.get(env, {}),
  }


def validate(c: Config, kind: str = "mbpo") -> None:
  if c.elites > c.ensemble_size:
    fail("elites", c.elites, f"more than ensemble_size = {c.ensemble_size}")
  if len(c.branch_schedule) != 4:
    fail(
      "branch_schedule",
      c.branch_schedule,
      "needs 4 integers: from_epoch,to_epoch,min_length,max_length",
    )
  a, b, lo, hi = c.branch_schedule
  if not (0 <= a < b and 1 <= lo <= hi):
    fail(
      "branch_schedule",
      c.branch_schedule,
      "needs 0 <= from_epoch < to_epoch and 1 <= min_length <= max_length",
    )
  if c.buffer_size < c.exploration_steps + c.batch_steps:
    fail("buffer_size", c.buffer_size, "smaller than exploration_steps + one iteration")
  if c.model_fit_budget and c.model_epoch_steps and c.model_fit_budget % c.model_epoch_steps:
    fail(
      "model_fit_budget",
      c.model_fit_budget,
      f"not a multiple of model_epoch_steps = {c.model_epoch_steps}",
    )
  if c.elite_draw == "block" and c.rollout_batch % c.elites:
    fail(
      "rollout_batch",
      c.rollout_batch,
      f"elite_draw='block' deals it out in equal blocks: not a multiple of elites = {c.elites}",
    )
  if c.real_grad_ema:
    fail(
      "real_grad_ema",
      c.real_grad_ema,
      "is for mg and mle: the SAC loop's g_R comes from buffer states (see real_grad_states)",
    )
  if c.real_grad_states and c.real_grad_states < c.mg_rollouts * c.mg_horizon:
    fail(
      "real_grad_states",
      c.real_grad_states,
      f"fewer than mg_rollouts·mg_horizon = {c.mg_rollouts * c.mg_horizon}, the default",
    )
  if kind == "mg-sac" and c.mg_rollouts < 2 and c.estimator == "score":
    fail("mg_rollouts", c.mg_rollouts, "the score estimator's baseline needs at least 2")


def watched(c: Config, kind: str = "mbpo") -> tuple[str, ...]:
  """The losses whose non-finite value is a blow-up."""
  return ("critic_loss", "actor_loss", "model_nll") + (
    ("mg_loss",) if kind == "mg-sac" and c.mg_steps else ()
  )


# The config parts each loop reads.
PARTS = {
  "mbpo": (sac.SACConfig, ModelConfig, MBPOConfig),
  "mg-sac": (sac.SACConfig, ModelConfig, MBPOConfig, MGConfig),
}


def _algorithm(kind: str, color: str, metrics: tuple[str, ...], preset_fn) -> Algorithm:
  spec = Spec(metrics, SWEEPABLE[kind], watched, False, transients, color, PARTS[kind])
  return loop_algorithm(
    kind, sys.modules[__name__], preset_fn, spec, initial_steps=lambda c: c.exploration_steps
  )


# Green and orange in figures.
MBPO = _algorithm("mbpo", "C2", METRICS, preset)
MG_SAC = _algorithm(
  "mg-sac", "C1", METRICS + MG_FIT_METRICS, lambda env: {**preset(env), **MG_SAC_PRESET}
)
