"""`mg`, `mle` and `ppo`: PPO in a learned model whose fit is MG (or NLL alone), or on real data.

One iteration (see docs/design.md, "The loops"):
  1. `collect`: rollout_length steps of π_θ in num_envs training envs;
  2. GAE on the real batch with V_ψ, and g_R = ∇_θ mean[log π(a|s) Â] on it;
  3. (mg, mle) the batch joins the buffer; `fit_mle`: K_mle NLL steps; (mg) `fit_model_mg`:
     K_mg steps of −S(ĝ_M(φ), g_R) + λ_mle · NLL; `model_alignment` logs cos(ĝ_M, g_R), and
     `heldout_alignment` the same before the fit, on a batch the model has not seen;
  4. (mg, mle) model_updates PPO updates on branched model rollouts (`model_ppo_batch`);
     (ppo) one PPO update on the real batch.
`iteration` is `start`, the named stages of `stages` in order (each fn(su, carry) -> carry,
`mgjax.algorithms.base.Stage`), then `finish`; a benchmark runs each stage as a program of
its own. The state and setup live in `mg_setup`, the stages on real
data and PPO in `mg_stages`, the MG stage in `mg_model`; this module names them all.
"""

import sys

import jax
import numpy as np

from mgjax.agents.ppo import ModelPPOConfig, PPOConfig
from mgjax.algorithms.base import (
  Algorithm,
  Spec,
  Stage,
  loop_algorithm,
  mean_episode_return,
  run_stages,
)

# mg_loss and mg_start_obs are part of this module's API (the MG stage).
from mgjax.algorithms.mg_model import (  # noqa: F401
  average_real_grad,
  fit_model_mg,
  mg_loss,
  mg_loss_from,
  mg_start_obs,
  model_alignment,
  model_objective,
)
from mgjax.algorithms.mg_setup import (  # noqa: F401  (the state and setup, part of this module's API)
  SWEEPABLE,
  MGState,
  ModelState,
  PPOState,
  Setup,
  init,
  setup,
)
from mgjax.algorithms.mg_stages import (  # noqa: F401  (the stages, part of this module's API)
  _flat,
  batch_rows,
  collect,
  evaluate,
  make_policy,
  model_ppo_batch,
  policy_params,
  policy_update,
  real_advantages,
  real_critic,
  real_policy_gradient,
  real_ppo_batch,
)
from mgjax.buffer import buffer_add
from mgjax.config import Config, fail
from mgjax.models.fitting import MG_FIT_METRICS, MGConfig, ModelConfig, fit_mle
from mgjax.models.nll import model_nll
from mgjax.nets.normalization import update_stats
from mgjax.types import Transition

_NAN = np.float32(np.nan)  # NumPy: importing mgjax must not start a JAX backend
METRICS = (
  "train_return",
  "model_grad_cosine",
  "model_nll",
  "mle_loss",
  *MG_FIT_METRICS,
  "model_grad_cosine_heldout",
  "policy_loss",
  "value_loss",
  "entropy",
)


# ------------------------------------------------------------------------------ stages


def heldout_alignment(
  su: Setup, state: ModelState, batch: Transition, advantages: jax.Array, key: jax.Array
) -> jax.Array:
  """cos(ĝ_M, g_R) out of sample, alike for mg and mle: the model has not been fitted on this
  batch yet, g_R is taken on the first half of its envs and ĝ_M's start states are drawn from
  the other half, so the two share no noise (NaN with one env)."""
  half = su.train_env.num_envs // 2
  if not half:
    return _NAN
  first = lambda x: x[:, :half]
  real_grad = real_policy_gradient(
    su.nets.make_policy(state.obs_stats),
    state.agent_params["policy"],
    jax.tree.map(first, batch),
    first(advantages),
    su.mg.mg_advantages,
  )
  skey, rkey = jax.random.split(key)
  states = _flat(batch.obs[:, half:])
  start = states[jax.random.randint(skey, (su.mg.mg_rollouts,), 0, states.shape[0])]
  _, metrics = mg_loss_from(su, state, state.model_params, start, rkey, real_grad)
  return metrics["cosine"]


# ------------------------------------------------------------------------------ the loop
def collect_batch(su: Setup, state, key: jax.Array):
  """Step 1: `collect` with the state's policy and envs -> (env_state, Transition [T, N])."""
  return collect(
    su.train_env,
    su.nets.make_policy(state.obs_stats),
    state.agent_params["policy"],
    state.env_state,
    key,
    rollout_length=su.run.rollout_length,
    action_mode=su.ppo.action_mode,
  )


def nll_steps(su: Setup, state: ModelState, key: jax.Array):
  """K_mle NLL steps of the model on the buffer -> (params, opt_state, mean loss)."""
  return fit_mle(
    state.model_params,
    state.model_opt,
    state.buffer,
    key,
    loss=su.nll(state.obs_stats),
    optimizer=su.model_optimizer,
    steps=su.fit.mle_steps,
    batch_size=su.fit.mle_batch,
  )


def model_policy_updates(su: Setup, state: ModelState, key: jax.Array):
  """Step 4 of mg and mle: model_updates PPO updates, each on fresh branched model rollouts
  -> (state, (policy losses, value losses, entropies) [model_updates])."""

  def policy_round(s, k):
    bk, uk = jax.random.split(k)
    return policy_update(su, s, model_ppo_batch(su, s, bk), uk)

  return jax.lax.scan(policy_round, state, jax.random.split(key, su.model_ppo.model_updates))


# The stages of an iteration, each fn(su, carry) -> carry (`mgjax.algorithms.base.Stage`).
def _collect(su: Setup, c: dict) -> dict:
  """Step 1, and the state's counters, statistics and key move on."""
  state = c["state"]
  env_state, batch = collect_batch(su, state, c["keys"]["collect"])
  state = state.replace(
    env_state=env_state,
    obs_stats=update_stats(state.obs_stats, batch.obs),
    key=c["keys"]["next"],
    iteration=state.iteration + 1,
    env_steps=state.env_steps + su.run.batch_steps,
  )
  return {
    **c,
    "state": state,
    "batch": batch,
    "metrics": {"train_return": mean_episode_return(env_state)},
  }


def _advantages(su: Setup, c: dict) -> dict:
  """Step 2: GAE with V_ψ; for mg and mle also g_R (its advantages from a critic fitted on
  real returns alone with `real_value_steps`)."""
  state, batch = c["state"], c["batch"]
  gae_kw = dict(discount=su.ppo.discount, gae_lambda=su.ppo.gae_lambda)
  value_fn = su.nets.make_value_fn(state.obs_stats)
  adv, targets = real_advantages(value_fn, state.agent_params["value"], batch, **gae_kw)
  if not isinstance(state, ModelState):
    return {**c, "advantages": adv, "targets": targets}
  if su.mg.real_value_steps:
    psi_real = real_critic(
      value_fn,
      state.agent_params["value"],
      batch,
      steps=su.mg.real_value_steps,
      learning_rate=su.mg.real_value_learning_rate,
      **gae_kw,
    )
    adv, _ = real_advantages(value_fn, psi_real, batch, **gae_kw)
  real_grad = real_policy_gradient(
    su.nets.make_policy(state.obs_stats),
    state.agent_params["policy"],
    batch,
    adv,
    su.mg.mg_advantages,
  )
  return {**c, "advantages": adv, "real_grad": real_grad}


def _heldout(su: Setup, c: dict) -> dict:
  """Step 3 begins: the held-out alignment and NLL on the new batch, which then joins the
  buffer."""
  state, batch = c["state"], c["batch"]
  # Its key comes from fold_in, leaving the fit's stream as it was.
  key = jax.random.fold_in(c["keys"]["fit"], 1)
  metrics = {"model_grad_cosine_heldout": heldout_alignment(su, state, batch, c["advantages"], key)}
  new_rows = batch_rows(batch)
  metrics["model_nll"] = model_nll(
    su.model_net,
    state.obs_stats,
    state.model_params,
    new_rows["obs"],
    new_rows["action"],
    new_rows["next_obs"],
    new_rows["reward"],
    su.ppo.action_mode,
  )
  state = state.replace(buffer=buffer_add(state.buffer, new_rows))
  return {**c, "state": state, "metrics": {**c["metrics"], **metrics}}


def _fit_keys(c: dict) -> tuple[jax.Array, jax.Array, jax.Array]:
  return tuple(jax.random.split(c["keys"]["fit"], 3))


def _nll_steps(su: Setup, c: dict) -> dict:
  """K_mle NLL steps (`nll_steps`)."""
  params, opt, loss = nll_steps(su, c["state"], _fit_keys(c)[0])
  state = c["state"].replace(model_params=params, model_opt=opt)
  return {**c, "state": state, "metrics": {**c["metrics"], "mle_loss": loss}}


def _mg_steps(su: Setup, c: dict) -> dict:
  """(mg) K_mg MG steps against the averaged g_R (`fit_model_mg`)."""
  state = c["state"]
  avg, target = average_real_grad(
    state.real_grad_avg, c["real_grad"], state.hparams["real_grad_ema"], state.iteration
  )
  state, metrics = fit_model_mg(su, state.replace(real_grad_avg=avg), _fit_keys(c)[1], target)
  return {**c, "state": state, "metrics": {**c["metrics"], **metrics}}


def _alignment(su: Setup, c: dict) -> dict:
  """The alignment diagnostic cos(ĝ_M, g_R) after the fit (`model_alignment`)."""
  cosine = model_alignment(su, c["state"], _fit_keys(c)[2], c["real_grad"])
  return {**c, "metrics": {**c["metrics"], "model_grad_cosine": cosine}}


def _policy_updates(su: Setup, c: dict) -> dict:
  """Step 4 of mg and mle (`model_policy_updates`)."""
  state, (pl, vl, ent) = model_policy_updates(su, c["state"], c["keys"]["policy"])
  return {**c, "state": state, "losses": (pl.mean(), vl.mean(), ent.mean())}


def _policy_update(su: Setup, c: dict) -> dict:
  """Step 4 of ppo: one PPO update on the real batch (`policy_update`)."""
  batch = real_ppo_batch(c["batch"], c["advantages"], c["targets"])
  state, losses = policy_update(su, c["state"], batch, c["keys"]["policy"])
  return {**c, "state": state, "losses": losses}


def stages(su: Setup, state) -> tuple[Stage, ...]:
  """The named stages of one iteration of `state`'s algorithm, in order: for ppo "collect",
  "advantages", "policy_update"; for mle "collect", "advantages", "heldout", "nll_steps",
  "alignment", "policy_updates"; mg has "mg_steps" after "nll_steps"."""
  del su  # the same stages on every setup
  if not isinstance(state, ModelState):
    return (
      Stage("collect", _collect),
      Stage("advantages", _advantages),
      Stage("policy_update", _policy_update),
    )
  fit = (Stage("heldout", _heldout), Stage("nll_steps", _nll_steps))
  if isinstance(state, MGState):
    fit += (Stage("mg_steps", _mg_steps),)
  return (
    Stage("collect", _collect),
    Stage("advantages", _advantages),
    *fit,
    Stage("alignment", _alignment),
    Stage("policy_updates", _policy_updates),
  )


def start(su: Setup, state) -> dict:
  """The carry that the first stage gets: the state and the iteration's keys."""
  del su
  key, ckey, mkey, _, _, pkey = jax.random.split(state.key, 6)
  return {"state": state, "keys": {"next": key, "collect": ckey, "fit": mkey, "policy": pkey}}


def finish(su: Setup, c: dict):
  """(state, per-iteration metrics) from the last stage's carry."""
  del su
  pl, vl, ent = c["losses"]
  metrics = {**c["metrics"], "policy_loss": pl, "value_loss": vl, "entropy": ent}
  metrics["env_steps"] = c["state"].env_steps
  for name in METRICS:
    metrics.setdefault(name, _NAN)
  return c["state"], metrics


def iteration(su: Setup, state):
  """One collect–fit–optimise iteration -> (state, per-iteration metrics): `start`, every
  stage of `stages` in order, then `finish`."""
  return finish(su, run_stages(stages(su, state), su, start(su, state)))


# ------------------------------------------------------------------------------ for the runner
def validate(c: Config, kind: str = "mg") -> None:
  """PPO minibatches must split the batch they are cut from; the buffer must hold an
  iteration; the score estimator's baseline needs two MG rollouts."""
  uses_model = kind in ("mg", "mle")
  ppo_batch = c.model_rollouts * c.model_horizon if uses_model else c.batch_steps
  ppo_field = "model_rollouts*model_horizon" if uses_model else "num_envs*rollout_length"
  if ppo_batch % c.num_minibatches:
    fail("num_minibatches", c.num_minibatches, f"does not divide {ppo_field} = {ppo_batch}")
  if uses_model:
    if c.buffer_size < c.batch_steps:
      fail(
        "buffer_size",
        c.buffer_size,
        f"smaller than one iteration's batch (num_envs*rollout_length = {c.batch_steps})",
      )
    if c.mle_batch > c.buffer_size:
      fail("mle_batch", c.mle_batch, f"larger than buffer_size = {c.buffer_size}")
  if kind == "mg" and c.mg_rollouts < 2 and c.estimator == "score":
    fail("mg_rollouts", c.mg_rollouts, "the score estimator's baseline needs at least 2")
  if c.real_value_steps and not uses_model:
    fail(
      "real_value_steps",
      c.real_value_steps,
      "is for mg and mle: ppo's critic is fitted on real data",
    )
  if c.real_grad_states:
    fail(
      "real_grad_states",
      c.real_grad_states,
      "is for mbpo and mg-sac: the PPO loop's g_R is its batch's (denoise it with real_grad_ema)",
    )


def watched(c: Config, kind: str = "mg") -> tuple[str, ...]:
  """The losses whose non-finite value is a blow-up."""
  names = ("policy_loss", "value_loss")
  if kind == "ppo":
    return names
  return (
    names
    + ("model_nll",)
    + (("mle_loss",) if c.mle_steps else ())
    + (("mg_loss",) if kind == "mg" and c.mg_steps else ())
  )


# The config parts each loop reads (mle reports the MG alignment, so it reads MGConfig too).
PARTS = {
  "mg": (PPOConfig, ModelConfig, ModelPPOConfig, MGConfig),
  "mle": (PPOConfig, ModelConfig, ModelPPOConfig, MGConfig),
  "ppo": (PPOConfig,),
}


def _algorithm(kind: str, color: str) -> Algorithm:
  spec = Spec(METRICS, SWEEPABLE[kind], watched, color=color, parts=PARTS[kind])
  return loop_algorithm(kind, sys.modules[__name__], lambda env: {}, spec)


# Red, blue and gray in figures.
MG, MLE, PPO = _algorithm("mg", "C3"), _algorithm("mle", "C0"), _algorithm("ppo", "C7")
