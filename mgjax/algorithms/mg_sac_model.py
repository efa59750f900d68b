"""The MG model stage of `mg-sac`: the MG objective on SAC's actor loss, through the
ensemble's elites, and the alignment diagnostic both `mbpo` and `mg-sac` log.

g_R is the actor-loss gradient on real buffer states, ĝ_M the same gradient on the states of
short elite rollouts from them (`actor_model_gradient_loss`; docs/design.md, "The MG
objective"). The stages read the parts of the mbpo Setup they use: the actor and critic
networks, the model, the model optimizer, the ensemble fit and the MG settings.
"""

import functools

import jax

from mgjax import model_gradient
from mgjax.agents import sac
from mgjax.algorithms.mg_model import fit_state, state_objective
from mgjax.buffer import buffer_sample
from mgjax.models.ensemble import member_minibatches
from mgjax.models.nll import ensemble_nll_loss
from mgjax.types import Params


def _actor_loss(su, sac_params: sac.SACParams):
  """SAC's per-state actor objective ℓ(θ, s, key) with the current critics and α."""
  return functools.partial(
    sac.actor_objective,
    q_params=sac_params.q,
    log_alpha=sac_params.log_alpha,
    q_fn=su.q_net.apply,
    actor_fn=su.actor_net.apply,
  )


def real_actor_gradient(
  su, state, sample_key: jax.Array, grad_key: jax.Array, states: int | None = None
):
  """`states` (by default mg_rollouts·mg_horizon) real buffer states and g_R, the actor-loss
  gradient on them."""
  real = buffer_sample(state.buffer, sample_key, states or su.mg.mg_rollouts * su.mg.mg_horizon)[
    "obs"
  ]
  return real, actor_gradient_on(su, state, real, grad_key)


def actor_gradient_on(su, state, obs: jax.Array, key: jax.Array) -> Params:
  """g_R on the given states [N, obs_size]: ∇_θ (1/N) Σ_i ℓ(θ, s_i) with the state's
  critics and α."""
  return model_gradient.actor_gradient(
    state.sac.actor, actor_loss=_actor_loss(su, state.sac), obs=obs, key=key
  )


def mg_loss(su, state, params: Params, key: jax.Array, real_grad: Params | None = None):
  """`actor_model_gradient_loss` of ensemble params φ (through its elites) -> (loss, metrics),
  metrics["real_grad"] = g_R.

  mg_rollouts·mg_horizon real buffer states give g_R, the SAC actor-loss gradient with the
  current critics and α; the first mg_rollouts of them start the mg_horizon-step rollouts
  (a uniformly drawn elite per transition, as in `branched_rollouts`), so both sides average
  the same number of states. A given `real_grad` is the target instead, and the rollouts
  start from mg_rollouts buffer states drawn with the same sample key.
  """
  skey, gkey, mkey = jax.random.split(key, 3)
  if real_grad is None:
    real, real_grad = real_actor_gradient(su, state, skey, gkey)
  else:
    real = buffer_sample(state.buffer, skey, su.mg.mg_rollouts)["obs"]
  return mg_loss_from(su, state, params, real[: su.mg.mg_rollouts], mkey, real_grad)


def mg_loss_from(
  su, state, params: Params, start_obs: jax.Array, key: jax.Array, real_grad: Params
):
  """`mg_loss` on given start states and target: the elites' mg_horizon-step rollouts from
  start_obs [N, obs_size] against g_R = real_grad -> (loss, metrics with "real_grad")."""
  elite_params = jax.tree.map(lambda p: p[state.elites], params)  # φ reaches the elites
  loss, metrics = model_gradient.actor_model_gradient_loss(
    elite_params,
    policy_params=state.sac.actor,
    real_grad=real_grad,
    start_obs=start_obs,
    key=key,
    policy=su.policy(),
    model=su.model(state.obs_stats),
    actor_loss=_actor_loss(su, state.sac),
    horizon=su.mg.mg_horizon,
    similarity=su.mg.similarity,
    estimator=su.mg.estimator,
  )
  return loss, {**metrics, "real_grad": real_grad}


def alignment_ceiling(su, state, key: jax.Array) -> dict:
  """cos(ĝ_M, g_R) (`mg_loss`'s) next to its noise ceiling cos(g_R', g_R), g_R' the
  actor-loss gradient on as many other real buffer states, drawn independently: the
  alignment a model would score whose states were fresh real data."""
  key, skey, gkey = jax.random.split(key, 3)
  _, metrics = mg_loss(su, state, state.model_params, key)
  _, g_other = real_actor_gradient(su, state, skey, gkey)
  return {
    "real_vs_real": model_gradient.similarity_value(g_other, metrics["real_grad"], "cosine"),
    "model_vs_real": metrics["cosine"],
  }


def fit_model_mg(su, state, key: jax.Array):
  """mg-sac: mg_steps steps of L(φ) = −S-surrogate + mle_weight · Σ_e NLL_e on the whole
  ensemble (the MG term reaches the elites; the NLL, on each member's own minibatch, all of
  them), the MG term's gradient clipped (`mgjax.models.mg_objective`)
  -> (state, metrics: `mgjax.models.fitting.MG_FIT_METRICS`).

  Each step draws its own g_R on mg_rollouts·mg_horizon buffer states. With
  real_grad_states = M > 0 the target is instead one g_R on M buffer states, drawn once per
  round (keys from `fold_in(key, steps)`) and held over its steps: a denoised target, free
  of env steps since the states are in the buffer (the alignment probe's lever).
  The logged `model_grad_cosine` keeps the default's per-draw g_R, so it means the same
  with the flag.
  """
  target = None
  if su.mg.real_grad_states:
    skey, gkey = jax.random.split(jax.random.fold_in(key, su.mg.mg_steps))
    _, target = real_actor_gradient(su, state, skey, gkey, su.mg.real_grad_states)

  def nll_loss(params, key):
    minibatches = member_minibatches(state.buffer, key, su.fit.members, su.fit.batch_size)
    return ensemble_nll_loss(params, minibatches, net=su.model_net, stats=state.obs_stats)

  objective = state_objective(
    state,
    mg_loss=lambda params, k: mg_loss(su, state, params, k, target),
    nll_loss=nll_loss,
    optimizer=su.model_optimizer,
  )
  return fit_state(state, objective, key, su.mg.mg_steps)
