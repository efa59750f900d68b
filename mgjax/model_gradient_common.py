"""The parts both model-gradient losses share (`mgjax.model_gradient`, whose docstring gives
the notation): the checks they make on entry, the similarities S(g, g_R), the rollout in M_φ,
and the alignment step after it, ∇_φ⟨ĝ_M(φ), sg(u)⟩ estimated by the score function or
pathwise.

Every public function checks its inputs when it is traced (shapes and tree structures only)
and names the argument at fault.
"""

import operator
from typing import Any, Callable

import chex
import jax
import jax.numpy as jnp

from mgjax.types import Model, Params, Policy

SIMILARITIES = ("inner", "cosine", "l2")
ESTIMATORS = ("score", "pathwise")
_EPS = 1e-12


# ------------------------------------------------------------------------------ checks
def _check_like_params(tree: Params, params: Params, name: str, params_name: str) -> Params:
  """A gradient must have its parameters' leaves: the same key paths (a dict and a FrozenDict
  with the same keys are alike) and leaf shapes -> the tree in params' structure, so that
  `_vdot` pairs each leaf with its own. A missing leaf would give a plausible wrong number. A
  square leaf transposed (an [n, n] kernel given as its transpose) has the right path and
  shape, and cannot be caught."""
  paths = lambda t: jax.tree_util.tree_flatten_with_path(t)[0]
  given = {jax.tree_util.keystr(k): v for k, v in paths(tree)}
  wanted = [(jax.tree_util.keystr(k), v) for k, v in paths(params)]
  missing = [k for k, _ in wanted if k not in given]
  extra = sorted(set(given) - {k for k, _ in wanted})
  if missing or extra:
    raise ValueError(
      f"{name} must have the leaves of {params_name}: "
      + "; ".join(
        ([f"missing {', '.join(missing)}"] if missing else [])
        + ([f"not in {params_name}: {', '.join(extra)}"] if extra else [])
      )
    )
  for k, v in wanted:
    if jnp.shape(given[k]) != jnp.shape(v):
      raise ValueError(
        f"{name} must have the leaf shapes of {params_name}: {name}{k} is "
        f"{list(jnp.shape(given[k]))}, {params_name}{k} {list(jnp.shape(v))}"
      )
  return jax.tree.unflatten(jax.tree.structure(params), [given[k] for k, _ in wanted])


def _check_horizon(horizon: int) -> None:
  try:
    ok = operator.index(horizon) >= 1
  except TypeError:  # a float, or a tracer: the rollout's length must be known when tracing
    ok = False
  if not ok:
    raise ValueError(f"horizon={horizon!r}: must be a positive Python int, static under jit")


def _check_options(similarity: str, estimator: str) -> None:
  if similarity not in SIMILARITIES:
    raise ValueError(f"similarity={similarity!r}: unknown; choose one of {SIMILARITIES}")
  if estimator not in ESTIMATORS:
    raise ValueError(f"estimator={estimator!r}: unknown; choose one of {ESTIMATORS}")


def _check_start_obs(start_obs: jax.Array) -> None:
  chex.assert_rank(start_obs, 2, custom_message="start_obs must be [N, obs_size]")
  if not jnp.issubdtype(start_obs.dtype, jnp.floating):
    raise ValueError(
      f"start_obs: dtype {start_obs.dtype}; states must be floating (e.g. .astype(jnp.float32))"
    )


def _check_score_baseline(estimator: str, baseline: bool, start_obs: jax.Array) -> None:
  if estimator == "score" and baseline and start_obs.shape[0] < 2:
    raise ValueError(
      f"start_obs: {start_obs.shape[0]} row; the score estimator's leave-one-out baseline needs "
      "at least 2 rollouts (or baseline=False)"
    )


def _check_loss_inputs(
  policy_params: Params,
  real_grad: Params,
  start_obs: jax.Array,
  horizon: int,
  similarity: str,
  estimator: str,
  baseline: bool,
) -> Params:
  """The checks both model-gradient losses make on entry -> real_grad in policy_params'
  structure."""
  _check_options(similarity, estimator)
  real_grad = _check_like_params(real_grad, policy_params, "real_grad", "policy_params")
  _check_start_obs(start_obs)
  _check_horizon(horizon)
  _check_score_baseline(estimator, baseline, start_obs)
  return real_grad


# ------------------------------------------------------------------------------ estimators
def _per_state(
  fn: Callable[[Params, jax.Array, jax.Array], jax.Array],
  params: Params,
  obs: jax.Array,
  xs: jax.Array,
  message: str,
) -> jax.Array:
  """fn(params, s_b, x_b) for obs [B, ...], xs [B, ...] -> [B]; message names fn's contract
  when it does not return a scalar per state."""
  out = jax.vmap(fn, in_axes=(None, 0, 0))(params, obs, xs)
  chex.assert_shape(out, obs.shape[:1], custom_message=message)
  return out


def _vdot(a: Params, b: Params) -> jax.Array:
  return sum(jnp.vdot(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def similarity_value(g: Params, g_real: Params, similarity: str) -> jax.Array:
  """S(g, g_R): `inner` ⟨g, g_R⟩, `cosine` ⟨g, g_R⟩/(|g||g_R|), `l2` −|g − g_R|².

  g and g_real must have the same tree structure and leaf shapes."""
  g_real = _check_like_params(g_real, g, "g_real", "g")
  if similarity == "inner":
    return _vdot(g, g_real)
  if similarity == "cosine":
    return _vdot(g, g_real) / jnp.sqrt(_vdot(g, g) * _vdot(g_real, g_real) + _EPS)
  if similarity == "l2":
    diff = jax.tree.map(jnp.subtract, g, g_real)
    return -_vdot(diff, diff)
  raise ValueError(f"similarity={similarity!r}: unknown; choose one of {SIMILARITIES}")


def rollout(
  model_params: Params,
  policy_params: Params,
  start_obs: jax.Array,
  key: jax.Array,
  *,
  policy: Policy,
  model: Model,
  horizon: int,
):
  """Rolls π_θ out for `horizon` steps in M_φ from each row of start_obs.

  Returns time-major arrays: obs [H+1, N, ...], actions [H, N, ...], rewards [H, N],
  dones [H, N] (float), alive [H, N] (1 until the step after the first done; the
  terminating step itself is alive). Samples are differentiable in φ wherever
  `model.sample` is (the pathwise estimator relies on it).

  Args: start_obs [N, obs_size]; horizon: H, a Python int (static under jit).
  """
  _check_start_obs(start_obs)
  _check_horizon(horizon)
  n = start_obs.shape[0]

  def step(carry, step_key):
    obs, alive = carry
    pkey, mkey = jax.random.split(step_key)
    actions = jax.vmap(policy.sample, in_axes=(None, 0, 0))(
      policy_params, obs, jax.random.split(pkey, n)
    )
    next_obs, rewards, dones = jax.vmap(model.sample, in_axes=(None, 0, 0, 0))(
      model_params, obs, actions, jax.random.split(mkey, n)
    )
    chex.assert_shape(
      next_obs,
      obs.shape,
      custom_message=(
        "model.sample(params, obs, action, key) must return a next_obs shaped like obs"
      ),
    )
    chex.assert_shape(
      [rewards, dones],
      (n,),
      custom_message=(
        "model.sample(params, obs, action, key) must return a scalar reward and done"
      ),
    )
    dones = jax.lax.stop_gradient(dones.astype(jnp.float32))  # termination is not smooth.
    out = (obs, actions, rewards, dones, alive)
    return (next_obs, alive * (1.0 - dones)), out

  (last_obs, _), (obs, actions, rewards, dones, alive) = jax.lax.scan(
    step, (start_obs, jnp.ones((n,), jnp.float32)), jax.random.split(key, horizon)
  )
  obs = jnp.concatenate([obs, last_obs[None]], axis=0)
  return obs, actions, rewards, dones, alive


# ------------------------------------------------------------------------------ alignment
def _estimator_rollout(
  model_params: Params,
  policy_params: Params,
  start_obs: jax.Array,
  key: jax.Array,
  *,
  policy: Policy,
  model: Model,
  horizon: int,
  pathwise: bool,
):
  """`rollout` in M_φ as the estimator needs it: differentiable in φ for `pathwise`."""
  # score: the rollout is data, its dependence on φ enters only through log M (the surrogate).
  rollout_params = model_params if pathwise else jax.lax.stop_gradient(model_params)
  return rollout(
    rollout_params, policy_params, start_obs, key, policy=policy, model=model, horizon=horizon
  )


def _flatten_steps(x: jax.Array) -> jax.Array:
  """[H, N, ...] -> [H·N, ...], time-major: step t of rollout τ is row t·N + τ."""
  return x.reshape((x.shape[0] * x.shape[1],) + x.shape[2:])


def _alignment_loss(
  model_params: Params,
  policy_params: Params,
  real_grad: Params,
  *,
  terms: Callable[[Params, Any], jax.Array],
  inputs: Any,
  mask: jax.Array,
  advantages: jax.Array | None,
  trajectory,
  model: Model,
  horizon: int,
  similarity: str,
  pathwise: bool,
  baseline: bool,
) -> tuple[jax.Array, dict[str, Any]]:
  """What both model-gradient losses do after the rollout -> (loss, metrics).

  terms(θ, inputs) -> [H·N] is one θ-function f_t per step of the N rollouts, time-major
  (log π_θ(a_t|s_t) on inputs = (states, actions), or ℓ(θ, s_t, ξ_t) on inputs = states).
  With masks m_t = mask [H, N] and Â_t = advantages [H, N] (1 where None):

    ĝ_M  = ∇_θ mean_{t,τ}[f_t · m_t Â_t]      at the sampled data
    u    = ∂S/∂g at g = ĝ_M                    (held fixed)
    w_t  = ⟨∇_θ f_t, u⟩                        (one jvp for all N·H steps)
    F(τ) = (1/H) Σ_t m_t w_t Â_t

  and the surrogate is mean_τ F(τ) (`pathwise`: inputs, m_t and Â_t may be functions of φ)
  or `_score_surrogate`. The loss has value −S(ĝ_M, g_R) and gradient −∇_φ surrogate.
  """
  obs, actions, rewards, _, alive = trajectory
  n = obs.shape[1]
  coeffs = mask if advantages is None else mask * advantages
  # ĝ_M at the sampled data (its value only; φ-dependence is handled by the surrogates).
  data, data_coeffs = jax.lax.stop_gradient((inputs, coeffs.reshape(-1)))
  g_model = jax.grad(lambda p: jnp.mean(terms(p, data) * data_coeffs))(policy_params)
  sim = similarity_value(g_model, real_grad, similarity)
  u = jax.lax.stop_gradient(
    jax.grad(similarity_value)(g_model, real_grad, similarity)
  )  # ∂S/∂g, held fixed.

  # w_t = ⟨∇_θ f_t, u⟩ for all N·H steps in one forward-mode pass; for pathwise the inputs
  # stay functions of φ.
  _, w = jax.jvp(lambda p: terms(p, inputs if pathwise else data), (policy_params,), (u,))
  credit = mask * w.reshape(horizon, n)
  if advantages is not None:
    credit = credit * advantages
  per_traj = jnp.sum(credit, axis=0) / horizon  # F(τ), [N]

  surrogate = (
    jnp.mean(per_traj)
    if pathwise
    else _score_surrogate(model, model_params, per_traj, obs, actions, rewards, alive, baseline)
  )
  # Value −S, gradient −∇surrogate.
  loss = -sim - (surrogate - jax.lax.stop_gradient(surrogate))
  return loss, jax.tree.map(
    jax.lax.stop_gradient, _metrics(g_model, real_grad, sim, rewards, alive, mask)
  )


def _score_surrogate(
  model: Model,
  model_params: Params,
  per_traj: jax.Array,
  obs,
  actions,
  rewards,
  alive,
  baseline: bool,
) -> jax.Array:
  """mean_τ[(F(τ) − b_τ) Σ_t alive_t log M_φ(s_{t+1}, r_t|s_t, a_t)]: its φ-gradient is the
  score-function estimate of ∇_φ E[F]. b_τ is the leave-one-out mean of F (unbiased)."""
  n = per_traj.shape[0]
  f = jax.lax.stop_gradient(per_traj)
  b = (jnp.sum(f) - f) / max(n - 1, 1) if (baseline and n > 1) else 0.0
  # The sampled transitions are data; φ enters only through log M.
  log_m = jax.vmap(
    jax.vmap(model.log_prob, in_axes=(None, 0, 0, 0, 0)), in_axes=(None, 0, 0, 0, 0)
  )(model_params, *jax.lax.stop_gradient((obs[:-1], actions, obs[1:], rewards)))
  chex.assert_shape(
    log_m,
    rewards.shape,
    custom_message=(
      "model.log_prob(params, obs, action, next_obs, reward) must return a scalar per transition"
    ),
  )
  return jnp.mean((f - b) * jnp.sum(alive * log_m, axis=0))


def _metrics(g_model, real_grad, sim, rewards, alive, mask) -> dict[str, Any]:
  g_norm = jnp.sqrt(_vdot(g_model, g_model))
  r_norm = jnp.sqrt(_vdot(real_grad, real_grad))
  return {
    "cosine": _vdot(g_model, real_grad) / (g_norm * r_norm + _EPS),
    "similarity": sim,
    "model_grad_norm": g_norm,
    "model_grad": g_model,
    "real_grad_norm": r_norm,
    "model_reward": jnp.sum(alive * rewards) / jnp.maximum(jnp.sum(alive), 1.0),
    "alive_fraction": jnp.mean(mask),
  }
