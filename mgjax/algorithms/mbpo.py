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

import sys
from typing import Any

import jax

from mgjax.agents import sac
from mgjax.algorithms.base import (
  Algorithm,
  Spec,
  Stage,
  loop_algorithm,
  mean_episode_return,
  run_stages,
)
from mgjax.algorithms.mbpo_rollouts import (  # noqa: F401  (the model-data stages, part of this module's API)
  branch_length,
  branched_rollouts,
  elite_step,
  rollout_step_bytes,
  sac_batch,
  transients,
)
from mgjax.algorithms.mbpo_setup import (  # noqa: F401  (the state and setup, part of this module's API)
  EPOCH_LENGTH,
  SWEEPABLE,
  MBPOSetup,
  MBPOState,
  init,
  setup,
)

# alignment_ceiling and real_actor_gradient are part of this module's API (the MG stage).
from mgjax.algorithms.mg_sac_model import (  # noqa: F401
  alignment_ceiling,
  fit_model_mg,
  mg_loss,
  real_actor_gradient,
)

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
from mgjax.config import Config, fail
from mgjax.models.ensemble import fit_ensemble
from mgjax.models.fitting import MG_FIT_METRICS, MGConfig, ModelConfig
from mgjax.models.mbpo_config import MBPOConfig
from mgjax.nets.normalization import update_stats

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


# ------------------------------------------------------------------------------ stages
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


# The stages of an iteration, each fn(su, carry) -> carry (`mgjax.algorithms.base.Stage`).
def _model_fitting(su: MBPOSetup, c: dict) -> dict:
  """Step 1 (`fit_model`)."""
  state, metrics = fit_model(su, c["state"], c["keys"]["fit"])
  return {**c, "state": state, "metrics": metrics}


def _mg_steps(su: MBPOSetup, c: dict) -> dict:
  """(mg-sac) the MG steps on the fitted ensemble (`fit_model_mg`)."""
  state, metrics = fit_model_mg(su, c["state"], c["keys"]["mg"])
  return {**c, "state": state, "metrics": {**c["metrics"], **metrics}}


def _alignment(su: MBPOSetup, c: dict) -> dict:
  """cos(ĝ_M, g_R) of the ensemble: computed, not optimised, for mbpo (`mg_loss`)."""
  state = c["state"]
  _, alignment = mg_loss(su, state, state.model_params, c["keys"]["alignment"])
  return {**c, "metrics": {**c["metrics"], "model_grad_cosine": alignment["cosine"]}}


def _rollouts(su: MBPOSetup, c: dict) -> dict:
  """Step 2 (`branched_rollouts`); the state's key moves on."""
  state = c["state"].replace(key=c["keys"]["next"])
  return {**c, "state": branched_rollouts(su, state, c["keys"]["rollouts"], c["length"])}


def _act_and_update(su: MBPOSetup, c: dict) -> dict:
  """Step 3 (`act_and_update`), then the statistics take in the observed states."""
  state, metrics, obs = act_and_update(
    su, c["state"], c["keys"]["act"], c["keys"]["reset"], c["length"]
  )
  state = state.replace(obs_stats=update_stats(state.obs_stats, obs), iteration=state.iteration + 1)
  return {**c, "state": state, "metrics": {**c["metrics"], **metrics}}


def stages(su: MBPOSetup, state: MBPOState | None = None) -> tuple[Stage, ...]:
  """The named stages of one iteration, in order: "model_fitting", (mg-sac) "mg_steps",
  "alignment", "rollouts", "act_and_update"."""
  del state  # the same stages on every state
  mg = (Stage("mg_steps", _mg_steps),) if su.kind == "mg-sac" and su.mg.mg_steps else ()
  return (
    Stage("model_fitting", _model_fitting),
    *mg,
    Stage("alignment", _alignment),
    Stage("rollouts", _rollouts),
    Stage("act_and_update", _act_and_update),
  )


def start(su: MBPOSetup, state: MBPOState) -> dict:
  """The carry that the first stage gets: the state, the iteration's keys (those of the MG
  stage and the diagnostic from fold_in, leaving mbpo's stream as it was) and the branch
  length of its epoch."""
  key, fkey, rkey, ckey, ekey = jax.random.split(state.key, 5)
  keys = {"next": key, "fit": fkey, "rollouts": rkey, "act": ckey, "reset": ekey}
  keys.update(mg=jax.random.fold_in(state.key, 1), alignment=jax.random.fold_in(state.key, 2))
  epoch = (state.env_steps - su.sac.exploration_steps) // EPOCH_LENGTH
  return {"state": state, "keys": keys, "length": branch_length(epoch, su.mbpo.branch_schedule)}


def finish(su: MBPOSetup, c: dict) -> tuple[MBPOState, dict]:
  """(state, per-iteration metrics) from the last stage's carry."""
  del su
  state = c["state"]
  metrics = {
    **c["metrics"],
    "branch_length": c["length"],
    "env_steps": state.env_steps,
    "train_return": mean_episode_return(state.env_state),
  }
  return state, metrics


def iteration(su: MBPOSetup, state: MBPOState) -> tuple[MBPOState, dict]:
  """Model round (fit, elites, mg-sac's MG steps, rollouts) then rollout_length env steps
  with SAC updates -> (state, per-iteration metrics): `start`, every stage of `stages` in
  order, then `finish`."""
  return finish(su, run_stages(stages(su, state), su, start(su, state)))


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
