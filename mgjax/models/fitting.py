"""Model objectives in the optax style, the one fit step that runs them, and the MG+NLL
gradient mix.

A `ModelObjective` is a NamedTuple of two pure functions whose settings and data (the loss,
the optimiser, g_R, the buffer) are fixed by the factory that builds it:

    init(params) -> state                                the optimiser state(s) it steps with
    update(params, state, key) -> (updates, state, metrics)   one step's change of params

`fit(objective, params, state, key, steps)` scans `steps` of them. `nll_objective` is
maximum likelihood on minibatches, `mg_objective` the MG fit of `mg` and `mg-sac` (the MG
term's gradient clipped and mixed with the NLL's, `combine_model_grads`, through a shared or
a separate optimiser state). `fit_mle` is `fit` of an `nll_objective` on a buffer.
"""

import dataclasses
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mgjax.buffer import ReplayBuffer, buffer_sample
from mgjax.checks import Part, fail, layer_sizes, non_negative, one_of, positive
from mgjax.losses import ADVANTAGE_TRANSFORMS
from mgjax.model_gradient import ESTIMATORS, SIMILARITIES
from mgjax.types import Params

_NAN = np.float32(np.nan)  # NumPy: importing mgjax must not start a JAX backend

NLLLoss = Callable[[Params, dict], jax.Array]  # (model params, rows [B]) -> scalar
KeyedLoss = Callable[[Params, jax.Array], jax.Array]  # (model params, key) -> scalar
# (model params, key) -> (loss, metrics): a model-gradient loss.
KeyedMGLoss = Callable[[Params, jax.Array], tuple[jax.Array, dict]]
Metrics = dict[str, jax.Array]


@dataclasses.dataclass(frozen=True)
class ModelConfig(Part):
  """The dynamics model and its maximum-likelihood fit (mg, mle, mbpo, mg-sac)."""

  SECTION = "model fitting"

  model_hidden: tuple[int, ...] = (200, 200, 200)
  ensemble_size: int = 1  # dynamics-model members (uniform member per transition)
  model_learning_rate: float = 1e-3
  mle_steps: int = 100  # K_mle NLL steps per iteration
  mle_batch: int = 256

  def check(self) -> None:
    positive(self, ("ensemble_size", "mle_batch", "model_learning_rate"))
    non_negative(self, ("mle_steps",))
    layer_sizes(self, ("model_hidden",))


MG_STARTS = ("buffer", "batch")
MG_OPTIMIZERS = ("shared", "separate")


@dataclasses.dataclass(frozen=True)
class MGConfig(Part):
  """The MG model stage (mg, and the MG fit of mg-sac); mle reports its alignment with the
  same rollouts."""

  SECTION = "model gradient"

  mg_steps: int = 5  # K_mg model-gradient steps per iteration (mg only)
  mg_rollouts: int = 256  # N model rollouts per MG step
  mg_horizon: int = 10  # H of the MG rollouts
  similarity: str = "cosine"  # cosine | inner | l2
  estimator: str = "score"  # score | pathwise
  mle_weight: float = 1.0  # λ_mle: NLL weight inside MG steps (0 = pure MG)
  mg_max_grad_norm: float = 10.0  # clip the MG term's gradient to this norm (0 = off)
  real_grad_ema: float = 0.0  # MG target: running average of g_R over iterations with
  # this decay (0 = the latest batch's g_R alone)
  mg_start: str = "batch"  # MG rollout start states: batch (the latest real batch,
  # g_R's own states) | buffer (all real data)
  mg_optimizer: str = "shared"  # shared: the MG term's gradient joins the NLL's in one Adam
  # step | separate: the MG term takes its own Adam step, weighted by mg_weight
  mg_weight: float = 1.0  # w: weight of the MG term's (clipped) gradient, or of its step
  mg_advantages: str = "raw"  # advantages of g_R and ĝ_M alike: raw | centred | normalised
  # (PPO's per-batch convention)
  real_value_steps: int = 0  # mg, mle: Adam steps fitting a copy of V_ψ on each real batch's
  # λ-returns, whose advantages g_R then uses (0 = V_ψ as PPO fits it on model data)
  real_value_learning_rate: float = 1e-3  # Adam's learning rate of those steps
  real_grad_states: int = 0  # mbpo, mg-sac: real buffer states averaged in g_R, the MG
  # target (0 = mg_rollouts·mg_horizon, as many states as ĝ_M averages)

  def check(self) -> None:
    positive(self, ("mg_rollouts", "mg_horizon", "real_value_learning_rate"))
    non_negative(self, ("mg_steps", "real_value_steps"))
    if self.real_grad_states < 0:
      fail(
        "real_grad_states",
        self.real_grad_states,
        "must be non-negative (0 = mg_rollouts·mg_horizon)",
      )
    if not 0.0 <= self.real_grad_ema < 1.0:
      fail("real_grad_ema", self.real_grad_ema, "must lie in [0, 1)")
    non_negative(self, ("mle_weight", "mg_max_grad_norm", "mg_weight"))
    one_of(self, "similarity", SIMILARITIES)
    one_of(self, "estimator", ESTIMATORS)
    one_of(self, "mg_optimizer", MG_OPTIMIZERS)
    one_of(self, "mg_advantages", ADVANTAGE_TRANSFORMS)
    one_of(self, "mg_start", MG_STARTS)


class ModelObjective(NamedTuple):
  """A model objective, as optax's GradientTransformation: pure `init` and `update`.

  Attributes:
    init: params -> the objective's state (its optimiser state or states).
    update: (params, state, key) -> (updates, state, metrics): the change of params one step
      makes (`optax.apply_updates(params, updates)`), its new state, and scalar metrics of
      the step; `key` draws whatever the step samples (minibatches, rollouts).
  """

  init: Callable[[Params], Any]
  update: Callable[[Params, Any, jax.Array], tuple[Params, Any, Metrics]]


def fit(
  objective: ModelObjective, params: Params, state: Any, key: jax.Array, steps: int
) -> tuple[Params, Any, Metrics]:
  """`steps` steps of `objective` from (params, state), step k with key k of
  jax.random.split(key, steps) -> (params, state, metrics: each the mean over the steps; NaN
  when steps = 0)."""

  def step(carry, k):
    p, s = carry
    updates, s, metrics = objective.update(p, s, k)
    return (optax.apply_updates(p, updates), s), metrics

  (params, state), metrics = jax.lax.scan(step, (params, state), jax.random.split(key, steps))
  return params, state, {n: (jnp.mean(v) if steps else _NAN) for n, v in metrics.items()}


def nll_objective(loss: KeyedLoss, optimizer: optax.GradientTransformation) -> ModelObjective:
  """Maximum likelihood: each step one `optimizer` step on ∇loss(φ, key), where loss draws
  its own minibatch with the step's key. State: the optimizer's. Metric: "nll", the loss
  before the step."""

  def update(params, opt_state, key):
    nll, grads = jax.value_and_grad(loss)(params, key)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return updates, opt_state, {"nll": nll}

  return ModelObjective(optimizer.init, update)


def fit_mle(
  params: Params,
  opt_state: optax.OptState,
  buffer: ReplayBuffer,
  key: jax.Array,
  *,
  loss: NLLLoss,
  optimizer: optax.GradientTransformation,
  steps: int,
  batch_size: int,
) -> tuple[Params, optax.OptState, jax.Array]:
  """`steps` steps of `loss` on uniform minibatches of `batch_size` buffer rows (`fit` of an
  `nll_objective`) -> (params, opt_state, mean loss; NaN when steps = 0)."""
  objective = nll_objective(lambda p, k: loss(p, buffer_sample(buffer, k, batch_size)), optimizer)
  params, opt_state, metrics = fit(objective, params, opt_state, key, steps)
  return params, opt_state, metrics["nll"]


def combine_model_grads(
  g_mg: Params,
  g_nll: Params,
  *,
  mle_weight: jax.Array,
  max_norm: jax.Array,
  weight: float = 1.0,
) -> tuple[Params, jax.Array]:
  """weight · scale · g_mg + mle_weight · g_nll, with scale = min(1, max_norm / |g_mg|)
  clipping the MG term to a global norm of max_norm (0: no clipping) -> (gradient, |g_mg|).

  Score-function gradients scale with 1/σ of a sharp model and can be orders of magnitude
  larger than the NLL gradient; clipping keeps their noise from swamping the fit.
  """
  mg_norm = optax.tree.norm(g_mg)
  scale = jnp.where(max_norm > 0, jnp.minimum(1.0, max_norm / (mg_norm + 1e-8)), 1.0)
  scale = scale * weight
  grads = jax.tree.map(lambda a, b: scale * a + mle_weight * b, g_mg, g_nll)
  return grads, mg_norm


def _cosine(a: Params, b: Params) -> jax.Array:
  return optax.tree.vdot(a, b) / (optax.tree.norm(a) * optax.tree.norm(b) + 1e-30)


class MGObjectiveState(NamedTuple):
  """The MG objective's optimiser states: the model's, and the MG term's own (None when the
  step is shared)."""

  model_opt: optax.OptState
  mg_opt: optax.OptState | None = None


def mg_objective(
  mg_loss: KeyedMGLoss,
  nll_loss: KeyedLoss,
  optimizer: optax.GradientTransformation,
  *,
  mle_weight: jax.Array,
  max_norm: jax.Array,
  weight: float = 1.0,
  separate: bool = False,
) -> ModelObjective:
  """Steps of L(φ) = −S-surrogate(ĝ_M(φ), g_R) + λ_mle · NLL(φ), λ_mle = mle_weight, the MG
  term's gradient clipped to max_norm (0: no clip; `combine_model_grads`). mle_weight and
  max_norm may be traced (a run's sweepable settings).

  Where the MG term's step comes from:
  - shared (`separate=False`, the default): one `optimizer` step on
      w · clip(g_mg) + λ_mle · g_nll,   w = weight;
  - separate: Δ = Adam_model(λ_mle · g_nll) + w · Adam_mg(clip(g_mg)), so the MG term's
    step has its own moments and is not rescaled by the NLL's.
  State: `MGObjectiveState(model_opt, mg_opt)`, mg_opt None when shared.

  Metrics (how much the MG term moves the model): mg_loss, mg_grad_norm = |g_mg| before the
  clip, mg_grad_norm_clipped after it, mg_nll_grad_norm = |g_nll|, and, against the step
  Δ_nll = the same optimiser's step on λ_mle · g_nll alone from the same state,
  mg_update_cos = cos(Δ, Δ_nll) and mg_update_ratio = |Δ| / |Δ_nll|.

  A step's key gives (MG key, NLL key) = jax.random.split(key): mg_loss(φ, key) -> (loss,
  metrics) is the MG term (a model-gradient loss), nll_loss(φ, key) -> scalar the NLL on a
  minibatch it draws.
  """

  def init(params):
    return MGObjectiveState(optimizer.init(params), optimizer.init(params) if separate else None)

  def update(params, state, key):
    mkey, bkey = jax.random.split(key)
    (mg, _), g_mg = jax.value_and_grad(mg_loss, has_aux=True)(params, mkey)
    nll, g_nll = jax.value_and_grad(nll_loss)(params, bkey)
    nll_grads = jax.tree.map(lambda b: mle_weight * b, g_nll)
    without, nll_opt = optimizer.update(nll_grads, state.model_opt, params)
    if separate:
      clipped, mg_norm = combine_model_grads(g_mg, g_nll, mle_weight=0.0, max_norm=max_norm)
      mg_step, mg_opt = optimizer.update(clipped, state.mg_opt, params)
      updates = jax.tree.map(lambda a, b: a + weight * b, without, mg_step)
      state = MGObjectiveState(nll_opt, mg_opt)
    else:
      grads, mg_norm = combine_model_grads(
        g_mg, g_nll, mle_weight=mle_weight, max_norm=max_norm, weight=weight
      )
      updates, opt = optimizer.update(grads, state.model_opt, params)
      state = MGObjectiveState(opt, None)
    metrics = {
      "mg_loss": mg + mle_weight * nll,
      "mg_grad_norm": mg_norm,
      "mg_grad_norm_clipped": jnp.where(max_norm > 0, jnp.minimum(mg_norm, max_norm), mg_norm),
      "mg_nll_grad_norm": optax.tree.norm(g_nll),
      "mg_update_cos": _cosine(updates, without),
      "mg_update_ratio": optax.tree.norm(updates) / (optax.tree.norm(without) + 1e-30),
    }
    return updates, state, metrics

  return ModelObjective(init, update)


MG_FIT_METRICS = (
  "mg_loss",
  "mg_grad_norm",
  "mg_grad_norm_clipped",
  "mg_nll_grad_norm",
  "mg_update_cos",
  "mg_update_ratio",
)
