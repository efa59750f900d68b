"""The model-gradient objective: align the policy gradient on model data with the real one.

Notation (docs/design.md, "The MG objective"): θ policy, φ model, ĝ_M(φ) the policy gradient
estimated on rollouts in M_φ, g_R the policy gradient on real data (a constant here), S a
similarity. The model ascends S(ĝ_M(φ), g_R). By the chain rule ∇_φ S = J_φ(ĝ_M)ᵀ u with
u = ∂S/∂g at g = ĝ_M, so every similarity reduces to the gradient of ⟨ĝ_M(φ), sg(u)⟩,
which is estimated either by the score function of the model's transitions (`score`) or by
differentiating a reparameterised rollout (`pathwise`).

Every public function checks its inputs when it is traced (shapes and tree structures only:
nothing runs at run time) and names the argument at fault.

Under `jax.jit`, pass the arrays and parameter pytrees as arguments and close over the rest
with `functools.partial` (or mark it static): `policy`, `model`, `value_fn` and `actor_loss`
are functions, `horizon` sets the rollout's length, and `similarity`, `estimator` and
`baseline` choose the program. `discount` and `gae_lambda` may be either.
"""

import functools
import operator
from typing import Any, Callable

import chex
import jax
import jax.numpy as jnp

from mgjax.losses import ADVANTAGE_TRANSFORMS, gae, transform_advantages
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


def _check_transform(advantage_transform: str) -> None:
  if advantage_transform not in ADVANTAGE_TRANSFORMS:
    raise ValueError(
      f"advantage_transform={advantage_transform!r}: unknown; choose one of {ADVANTAGE_TRANSFORMS}"
    )


def _check_loss_inputs(
  policy_params: Params,
  real_grad: Params,
  start_obs: jax.Array,
  horizon: int,
  similarity: str,
  estimator: str,
) -> None:
  """The checks both model-gradient losses make on entry -> real_grad in policy_params'
  structure."""
  _check_options(similarity, estimator)
  real_grad = _check_like_params(real_grad, policy_params, "real_grad", "policy_params")
  _check_start_obs(start_obs)
  _check_horizon(horizon)
  return real_grad


# ------------------------------------------------------------------------------ estimators
def _batched_log_prob(
  policy: Policy, params: Params, obs: jax.Array, actions: jax.Array
) -> jax.Array:
  """log π(a_b|s_b) for obs [B, ...], actions [B, ...] -> [B]."""
  log_prob = jax.vmap(policy.log_prob, in_axes=(None, 0, 0))(params, obs, actions)
  chex.assert_shape(
    log_prob,
    obs.shape[:1],
    custom_message=("policy.log_prob(params, obs, action) must return a scalar per state"),
  )
  return log_prob


def policy_gradient(
  policy_params: Params,
  *,
  policy: Policy,
  obs: jax.Array,
  actions: jax.Array,
  advantages: jax.Array,
) -> Params:
  """Score-function policy gradient ∇_θ mean_b[log π_θ(a_b|s_b) · A_b].

  Args:
    policy_params: θ.
    policy: the policy's pure functions; only `log_prob` is used (a scalar per state).
    obs: [B, obs_size]; actions: [B, ...]; advantages: [B], treated as constants.
  Returns:
    A pytree shaped like `policy_params`.
  """
  chex.assert_rank(advantages, 1, custom_message="advantages must be [B], one per state")
  chex.assert_rank(obs, 2, custom_message="obs must be [B, obs_size]")
  chex.assert_equal_shape_prefix(
    [obs, actions, advantages],
    1,
    custom_message=("obs, actions and advantages must have the same number of rows B"),
  )
  advantages = jax.lax.stop_gradient(advantages)  # advantages are data, not functions of θ.

  def surrogate(params):
    return jnp.mean(_batched_log_prob(policy, params, obs, actions) * advantages)

  return jax.grad(surrogate)(policy_params)


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


def _zero_value(value_params: Params, obs: jax.Array) -> jax.Array:
  del value_params
  return jnp.zeros((), obs.dtype)


def _check_score_baseline(estimator: str, baseline: bool, start_obs: jax.Array) -> None:
  if estimator == "score" and baseline and start_obs.shape[0] < 2:
    raise ValueError(
      f"start_obs: {start_obs.shape[0]} row; the score estimator's leave-one-out baseline needs "
      "at least 2 rollouts (or baseline=False)"
    )


def model_gradient_loss(
  model_params: Params,
  *,
  policy_params: Params,
  value_params: Params = None,
  real_grad: Params,
  start_obs: jax.Array,
  key: jax.Array,
  policy: Policy,
  model: Model,
  value_fn: Callable[[Params, jax.Array], jax.Array] | None = None,
  horizon: int,
  estimator: str,
  discount: float = 0.99,
  gae_lambda: float = 0.95,
  similarity: str = "cosine",
  baseline: bool = True,
  advantage_transform: str = "raw",
) -> tuple[jax.Array, dict[str, Any]]:
  """Model-gradient loss: −jax.grad of it w.r.t. φ estimates ∇_φ S(ĝ_M(φ), g_R).

  One H-step rollout per row of start_obs ([N, obs_size]) gives, with alive masks m_t,
  GAE advantages Â_t (model rewards, V_ψ = value_fn(value_params, ·), bootstrap V(s_H),
  zero after predicted termination; no normalisation) and

    ĝ_M = ∇_θ (1/(N H)) Σ_τ Σ_t m_t log π_θ(a_t|s_t) Â_t           (same convention as
                                                                   `policy_gradient`)
    u   = ∂S/∂g at g = ĝ_M   (held fixed)
    w_t = ⟨∇_θ log π_θ(a_t|s_t), u⟩                                 (one jvp for the batch)
    F(τ) = (1/H) Σ_t m_t w_t Â_t,   so ⟨ĝ_M, u⟩ = mean_τ F(τ).

  `score`:    ∇_φ⟨ĝ_M, u⟩ ≈ mean_τ[(F(τ) − b_τ) Σ_t m_t ∇_φ log M_φ(s_{t+1}, r_t|s_t, a_t)],
              b_τ the leave-one-out mean of F (unbiased; `baseline=False` gives b = 0).
              F uses the whole trajectory: each transition can move every Â_t.
  `pathwise`: ∇_φ mean_τ F(τ) through the reparameterised rollout (s_t, a_t, r_t, Â_t all
              functions of φ; a_t is data inside the θ-derivative).

  The returned loss has value −S(ĝ_M, g_R) and gradient −(surrogate gradient).
  With discount = gae_lambda = 1 and value 0, E[ĝ_M] = ∇_θ E[Σ_{t<H} r_t] / H.

  Under jit, close over the functions and the settings that shape the program:

    loss_fn = functools.partial(model_gradient_loss, policy=policy, model=model,
                                value_fn=value_fn, horizon=10, estimator="score")
    step = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))
    (loss, metrics), grad = step(phi, policy_params=theta, value_params=psi,
                                 real_grad=g_real, start_obs=obs, key=key)

  Args:
    model_params: φ, the argument to differentiate.
    policy_params, value_params: θ and ψ (constants here).
    real_grad: g_R, a pytree with the tree structure and leaf shapes of policy_params
      (constant).
    start_obs: [N, obs_size] real start states. key: PRNG key for the rollout.
    policy, model: pure unbatched functions (`mgjax.Policy`, `mgjax.Model`); log_prob
      returns a scalar per state (per transition).
    value_fn: value_fn(value_params, obs) -> scalar; None (and value_params None): V = 0.
    horizon: H, a Python int. discount: γ. gae_lambda: λ.
    estimator: "score" or "pathwise", required (no default suits every model).
    similarity: "cosine" (default), "inner" or "l2".
    advantage_transform: "raw" (default), "centred" or "normalised": Â_t as
      `mgjax.losses.transform_advantages` gives it over the alive steps of the N rollouts;
      take g_R with the same convention.
  Returns:
    (loss, metrics) with metrics["cosine"] = cos(ĝ_M, g_R), metrics["similarity"] = S,
    metrics["model_grad"] = ĝ_M itself (shaped like policy_params), norms of ĝ_M and g_R,
    mean model reward and the fraction of steps alive.
  """
  real_grad = _check_loss_inputs(
    policy_params, real_grad, start_obs, horizon, similarity, estimator
  )
  _check_transform(advantage_transform)
  _check_score_baseline(estimator, baseline, start_obs)
  value_fn = _zero_value if value_fn is None else value_fn
  pathwise = estimator == "pathwise"
  real_grad = jax.lax.stop_gradient(real_grad)  # g_R is the fixed target.
  policy_params = jax.lax.stop_gradient(policy_params)
  value_params = jax.lax.stop_gradient(value_params)

  trajectory = _estimator_rollout(
    model_params,
    policy_params,
    start_obs,
    key,
    policy=policy,
    model=model,
    horizon=horizon,
    pathwise=pathwise,
  )
  obs, actions, rewards, dones, alive = trajectory
  values = jax.vmap(jax.vmap(value_fn, in_axes=(None, 0)), in_axes=(None, 0))(value_params, obs)
  chex.assert_shape(
    values,
    obs.shape[:2],
    custom_message=("value_fn(value_params, obs) must return a scalar per state"),
  )
  # pathwise: Â_t stays a function of φ through rewards and V(s_t(φ)).
  advantages, _ = gae(
    rewards,
    values[:-1],
    values[-1],
    dones,
    discount=discount,
    gae_lambda=gae_lambda,
    differentiable=pathwise,
  )
  advantages = transform_advantages(advantages, advantage_transform, alive)
  n = start_obs.shape[0]

  flat_obs = obs[:-1].reshape((horizon * n,) + obs.shape[2:])
  flat_actions = actions.reshape((horizon * n,) + actions.shape[2:])
  log_pi = functools.partial(_batched_log_prob, policy)
  return _alignment_loss(
    model_params,
    policy_params,
    real_grad,
    terms=lambda p, x: log_pi(p, *x),
    inputs=(flat_obs, flat_actions),
    mask=alive,
    advantages=advantages,
    trajectory=trajectory,
    model=model,
    horizon=horizon,
    similarity=similarity,
    pathwise=pathwise,
    baseline=baseline,
  )


def make_model_gradient_loss(
  policy: Policy,
  model: Model,
  horizon: int,
  estimator: str,
  *,
  value_fn: Callable[[Params, jax.Array], jax.Array] | None = None,
  discount: float = 0.99,
  gae_lambda: float = 0.95,
  similarity: str = "cosine",
  baseline: bool = True,
  advantage_transform: str = "raw",
) -> Callable[..., tuple[jax.Array, dict[str, Any]]]:
  """`model_gradient_loss` with its functions and the settings that shape its program fixed,
  as an optax factory fixes its settings:

    loss = make_model_gradient_loss(policy, model, horizon=10, estimator="score")
    step = jax.jit(jax.value_and_grad(loss, has_aux=True))
    (value, metrics), grad = step(phi, theta, psi, g_real, start_obs, key)

  -> loss(model_params, policy_params, value_params, real_grad, start_obs, key)
  -> (loss, metrics), arrays and pytrees only, so it jits and vmaps as it is. The settings are
  checked here, the arrays when the loss is traced; value_fn=None means V = 0 (pass
  value_params=None)."""
  _check_options(similarity, estimator)
  _check_horizon(horizon)
  _check_transform(advantage_transform)

  def loss(model_params, policy_params, value_params, real_grad, start_obs, key):
    return model_gradient_loss(
      model_params,
      policy_params=policy_params,
      value_params=value_params,
      real_grad=real_grad,
      start_obs=start_obs,
      key=key,
      policy=policy,
      model=model,
      value_fn=value_fn,
      horizon=horizon,
      estimator=estimator,
      discount=discount,
      gae_lambda=gae_lambda,
      similarity=similarity,
      baseline=baseline,
      advantage_transform=advantage_transform,
    )

  return loss


# ------------------------------------------------------------------------------------------
# Off-policy actors (SAC, DDPG, TD3): the policy objective is a per-state loss ℓ(θ, s, ξ)
# averaged over replay states, so the model enters ĝ_M only through the states it generates.

StateLoss = Callable[[Params, jax.Array, jax.Array], jax.Array]


def _batched_actor_loss(
  actor_loss: StateLoss, params: Params, obs: jax.Array, keys: jax.Array
) -> jax.Array:
  """ℓ(θ, s_b, key_b) for obs [B, ...], keys [B] -> [B]."""
  losses = jax.vmap(actor_loss, in_axes=(None, 0, 0))(params, obs, keys)
  chex.assert_shape(
    losses,
    obs.shape[:1],
    custom_message=("actor_loss(policy_params, obs, key) must return a scalar per state"),
  )
  return losses


def actor_gradient(
  policy_params: Params, *, actor_loss: StateLoss, obs: jax.Array, key: jax.Array
) -> Params:
  """∇_θ mean_b ℓ(θ, s_b, key_b) with keys jax.random.split(key, B).

  Args:
    policy_params: θ.
    actor_loss: ℓ(policy_params, obs, key) -> scalar, the per-state policy objective (SAC:
      α log π(a|s) − min_j Q_j(s, a) with a reparameterised by key; critics held fixed;
      `mgjax.agents.sac.actor_objective`).
    obs: [B, obs_size] states, treated as data.
  Returns:
    A pytree shaped like `policy_params`.
  """
  chex.assert_rank(obs, 2, custom_message="obs must be [B, obs_size]")
  obs = jax.lax.stop_gradient(obs)  # states are data: the θ-derivative sees only ℓ.
  keys = jax.random.split(key, obs.shape[0])

  def mean_loss(params):
    return jnp.mean(_batched_actor_loss(actor_loss, params, obs, keys))

  return jax.grad(mean_loss)(policy_params)


def actor_model_gradient_loss(
  model_params: Params,
  *,
  policy_params: Params,
  real_grad: Params,
  start_obs: jax.Array,
  key: jax.Array,
  policy: Policy,
  model: Model,
  actor_loss: StateLoss,
  horizon: int,
  estimator: str,
  similarity: str = "cosine",
  baseline: bool = True,
) -> tuple[jax.Array, dict[str, Any]]:
  """Model-gradient loss for an off-policy actor: −jax.grad of it w.r.t. φ estimates
  ∇_φ S(ĝ_M(φ), g_R) where ĝ_M is the actor-loss gradient on the states M_φ generates.

  One H-step rollout of π_θ per row of start_obs ([N, obs_size]) gives the generated states
  s_1..s_H with masks m_t = 1 while the rollout goes on: a state the model predicts terminal,
  and every state after it, gets 0 (the actor never acts in them, neither in a replay
  buffer's `obs` nor in the real data g_R is computed on), and

    ĝ_M = ∇_θ (1/(N H)) Σ_τ Σ_{t=1..H} m_t ℓ(θ, s_t, ξ_t)   (ξ_t fixed keys; the real start
                                                            states s_0 do not depend on φ)
    u   = ∂S/∂g at g = ĝ_M   (held fixed)
    w_t = ⟨∇_θ ℓ(θ, s_t, ξ_t), u⟩                          (one jvp for the batch)
    F(τ) = (1/H) Σ_t m_t w_t,   so ⟨ĝ_M, u⟩ = mean_τ F(τ).

  `pathwise`: ∇_φ mean_τ F(τ) through the reparameterised rollout, s_t = s_t(φ).
  `score`: mean_τ[(F(τ) − b_τ) Σ_t alive_t ∇_φ log M_φ(s_{t+1}, r_t|s_t, a_t)], b_τ the
  leave-one-out mean of F (`baseline=False`: b = 0).
  g_R is `actor_gradient` on real states; it must use the same ℓ (and the same scale).

  Under jit, as for `model_gradient_loss`: close over policy, model, actor_loss, horizon,
  similarity, estimator and baseline (functools.partial) and pass model_params,
  policy_params, real_grad, start_obs and key as arguments. An `actor_loss` that closes over
  arrays of the caller's (SAC's critics and α) is built inside the jitted function.

  Args:
    model_params: φ, the argument to differentiate.
    policy_params: θ (constant here); the rollout acts with policy.sample, which for
      `pathwise` must be differentiable in the observation (reparameterised).
    real_grad: g_R, a pytree with the tree structure and leaf shapes of policy_params
      (constant).
    start_obs: [N, obs_size] real start states. key: PRNG key for the rollout and for ξ.
    policy, model: pure unbatched functions (`mgjax.Policy`, `mgjax.Model`).
    actor_loss: ℓ(policy_params, obs, key) -> scalar, as in `actor_gradient`.
    horizon: H, a Python int. similarity: "cosine" (default), "inner" or "l2".
    estimator: "pathwise" or "score", required.
  Returns:
    (loss, metrics): the loss has value −S(ĝ_M, g_R); metrics as `model_gradient_loss`'s
    (cosine, similarity, model_grad = ĝ_M, its norm and g_R's, mean model reward,
    alive_fraction = mean of m_t).
  """
  real_grad = _check_loss_inputs(
    policy_params, real_grad, start_obs, horizon, similarity, estimator
  )
  _check_score_baseline(estimator, baseline, start_obs)
  pathwise = estimator == "pathwise"
  real_grad = jax.lax.stop_gradient(real_grad)  # g_R is the fixed target.
  policy_params = jax.lax.stop_gradient(policy_params)

  rollout_key, loss_key = jax.random.split(key)
  trajectory = _estimator_rollout(
    model_params,
    policy_params,
    start_obs,
    rollout_key,
    policy=policy,
    model=model,
    horizon=horizon,
    pathwise=pathwise,
  )
  obs, _, _, dones, alive = trajectory
  n = start_obs.shape[0]
  mask = alive * (1.0 - dones)  # s_{t+1} is acted in iff step t was alive and not terminal
  states = obs[1:].reshape((horizon * n,) + obs.shape[2:])
  keys = jax.random.split(loss_key, horizon * n)
  return _alignment_loss(
    model_params,
    policy_params,
    real_grad,
    terms=lambda p, s: _batched_actor_loss(actor_loss, p, s, keys),
    inputs=states,
    mask=mask,
    advantages=None,
    trajectory=trajectory,
    model=model,
    horizon=horizon,
    similarity=similarity,
    pathwise=pathwise,
    baseline=baseline,
  )


# ------------------------------------------------------------------------------ shared parts
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
