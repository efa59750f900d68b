"""The MG model stage of `mg`: K_mg steps of −S(ĝ_M(φ), g_R) + λ_mle · NLL on the model, the
target g_R (optionally a running average), and the alignment diagnostic.

ĝ_M is the PPO-style policy gradient on MG rollouts in the model (`model_gradient_loss`);
see docs/design.md, "The MG objective". The stages read the parts of the `mg` Setup they
use: its networks, the model, the NLL loss, the model optimizer and the MG settings.
"""

import jax
import jax.numpy as jnp

from mgjax.buffer import ReplayBuffer, buffer_sample, buffer_sample_recent
from mgjax.model_gradient import model_gradient_loss
from mgjax.models import fitting
from mgjax.models.fitting import MGConfig
from mgjax.types import Params


def average_real_grad(
  real_grad_avg: Params, real_grad: Params, beta: jax.Array, t: jax.Array
) -> tuple[Params, Params]:
  """The MG target: g_R, or with real_grad_ema = β > 0 the bias-corrected running average

      (1 − β) Σ_k β^(t−k) g_R^k / (1 − β^t)   over iterations k ≤ t,

  which trades lag for less noise -> (new running sum, target). t ≥ 1 is the iteration
  just taken; β = 0 gives g_R."""
  avg = jax.tree.map(lambda m, g: beta * m + (1.0 - beta) * g, real_grad_avg, real_grad)
  correction = 1.0 - beta ** t.astype(jnp.float32)
  return avg, jax.tree.map(lambda m: m / correction, avg)


def mg_start_obs(mg: MGConfig, buffer: ReplayBuffer, key: jax.Array, batch_steps: int) -> jax.Array:
  """mg.mg_rollouts start states for the MG rollouts: uniform over the latest real batch,
  the on-policy states g_R is computed on (`mg_start="batch"`, the default), or over the
  whole buffer ("buffer"). Called after that batch was appended, so it is the buffer's
  newest batch_steps rows."""
  if mg.mg_start == "batch":
    return buffer_sample_recent(buffer, key, mg.mg_rollouts, batch_steps)["obs"]
  return buffer_sample(buffer, key, mg.mg_rollouts)["obs"]


def mg_loss(su, state, params: Params, key: jax.Array, real_grad: Params):
  """`model_gradient_loss` of model params φ against g_R = real_grad, on MG rollouts from
  `mg_start_obs` -> (loss, metrics); metrics["model_grad"] is ĝ_M."""
  skey, rkey = jax.random.split(key)
  start = mg_start_obs(su.mg, state.buffer, skey, su.run.batch_steps)
  return mg_loss_from(su, state, params, start, rkey, real_grad)


def mg_loss_from(
  su,
  state,
  params: Params,
  start_obs: jax.Array,
  key: jax.Array,
  real_grad: Params,
  estimator: str | None = None,
):
  """`model_gradient_loss` of φ = params on rollouts from the given start states, with the
  run's policy, value function, model, horizon, discount, GAE λ, similarity and (unless
  given) estimator -> (loss, metrics)."""
  stats = state.obs_stats
  return model_gradient_loss(
    params,
    policy_params=state.agent_params["policy"],
    value_params=state.agent_params["value"],
    real_grad=real_grad,
    start_obs=start_obs,
    key=key,
    policy=su.nets.make_policy(stats),
    model=su.model(stats),
    value_fn=su.nets.make_value_fn(stats),
    horizon=su.mg.mg_horizon,
    discount=su.ppo.discount,
    gae_lambda=su.ppo.gae_lambda,
    similarity=su.mg.similarity,
    estimator=estimator or su.mg.estimator,
    advantage_transform=su.mg.mg_advantages,
  )


def state_objective(state, *, mg_loss, nll_loss, optimizer, weight=1.0) -> fitting.ModelObjective:
  """`mgjax.models.mg_objective` for the model of an algorithm's state: λ_mle =
  hparams["mle_weight"], max_norm = hparams["mg_max_grad_norm"], and the separate step where
  the state has an `mg_opt` that is not None."""
  return fitting.mg_objective(
    mg_loss,
    nll_loss,
    optimizer,
    mle_weight=state.hparams["mle_weight"],
    max_norm=state.hparams["mg_max_grad_norm"],
    weight=weight,
    separate=getattr(state, "mg_opt", None) is not None,
  )


def fit_state(state, objective: fitting.ModelObjective, key: jax.Array, steps: int):
  """`steps` steps of a model objective on the model of an algorithm's state, its state the
  run's optimiser states (`MGObjectiveState(model_opt, mg_opt)`, mg_opt None where the state
  has none) -> (state, metrics: means over the steps; NaN when steps = 0)."""
  mg_opt = getattr(state, "mg_opt", None)
  start = fitting.MGObjectiveState(state.model_opt, mg_opt)
  params, opt, metrics = fitting.fit(objective, state.model_params, start, key, steps)
  state = state.replace(model_params=params, model_opt=opt.model_opt)
  return (state.replace(mg_opt=opt.mg_opt) if mg_opt is not None else state), metrics


def model_objective(su, state, real_grad: Params) -> fitting.ModelObjective:
  """mg's model objective (`Setup.objective`'s default): L(φ) = −S-surrogate(ĝ_M(φ), g_R) +
  λ_mle · NLL(φ; buffer minibatch), the MG term's gradient clipped, its step shared or
  separate (`mgjax.models.mg_objective`)."""
  nll = su.nll(state.obs_stats)
  return state_objective(
    state,
    mg_loss=lambda params, k: mg_loss(su, state, params, k, real_grad),
    nll_loss=lambda params, k: nll(params, buffer_sample(state.buffer, k, su.fit.mle_batch)),
    optimizer=su.model_optimizer,
    weight=su.mg.mg_weight,
  )


def fit_model_mg(su, state, key: jax.Array, real_grad: Params):
  """K_mg steps of the run's model objective, `su.objective(su, state, real_grad)` (mg's:
  `model_objective`) -> (state, metrics)."""
  return fit_state(state, su.objective(su, state, real_grad), key, su.mg.mg_steps)


def model_alignment(su, state, key: jax.Array, real_grad: Params) -> jax.Array:
  """Diagnostic cos(ĝ_M, g_R) of the current model on fresh start states (not optimised)."""
  _, metrics = mg_loss(su, state, state.model_params, key, real_grad)
  return metrics["cosine"]
