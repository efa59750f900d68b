"""Model fitting by maximum likelihood on a replay buffer, and the MG+NLL gradient mix.

`fit_mle` is K_mle Adam steps on buffer minibatches; `fit_model_mg` is the MG fit of `mg` and
`mg-sac`, and `combine_model_grads` how it adds the MG term's gradient to the NLL's.
"""

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mgjax.buffer import ReplayBuffer, buffer_sample
from mgjax.optim import apply_gradients
from mgjax.types import Params

_NAN = np.float32(np.nan)  # NumPy: importing mgjax must not start a JAX backend

NLLLoss = Callable[[Params, dict], jax.Array]  # (model params, rows [B]) -> scalar
# (model params, algorithm state, key) -> (loss, metrics), and -> scalar.
StateMGLoss = Callable[[Params, Any, jax.Array], tuple[jax.Array, dict]]
StateNLLLoss = Callable[[Params, Any, jax.Array], jax.Array]


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
  """`steps` steps of `loss` on uniform minibatches of `batch_size` buffer rows
  -> (params, opt_state, mean loss; NaN when steps = 0)."""

  def step(carry, k):
    p, o = carry
    nll, grads = jax.value_and_grad(loss)(p, buffer_sample(buffer, k, batch_size))
    return apply_gradients(optimizer, p, o, grads), nll

  (params, opt_state), nll = jax.lax.scan(step, (params, opt_state), jax.random.split(key, steps))
  return params, opt_state, (jnp.mean(nll) if steps else jnp.float32(jnp.nan))


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


def fit_model_mg(
  state,
  key: jax.Array,
  *,
  mg_loss: StateMGLoss,
  nll_loss: StateNLLLoss,
  optimizer: optax.GradientTransformation,
  steps: int,
  mg_weight: float = 1.0,
):
  """`steps` steps of L(φ) = −S-surrogate(ĝ_M(φ), g_R) + λ_mle · NLL(φ) on the model of an
  algorithm's state (`model_params`, `model_opt`; λ_mle = hparams["mle_weight"]), the MG
  term's gradient clipped to hparams["mg_max_grad_norm"] (`combine_model_grads`)
  -> (state, metrics: means over the steps; NaN when steps = 0).

  Where the MG term's step comes from:
  - shared (`state.mg_opt` is None, the default): one Adam step on
      w · clip(g_mg) + λ_mle · g_nll,   w = mg_weight;
  - separate (`state.mg_opt` holds an optimiser state of its own):
      Δ = Adam_model(λ_mle · g_nll) + w · Adam_mg(clip(g_mg)),
    so the MG term's step has its own moments and is not rescaled by the NLL's.

  Metrics (how much the MG term moves the model): mg_loss, mg_grad_norm = |g_mg| before the
  clip, mg_grad_norm_clipped after it, mg_nll_grad_norm = |g_nll|, and, against the step
  Δ_nll = the same optimiser's step on λ_mle · g_nll alone from the same state,
  mg_update_cos = cos(Δ, Δ_nll) and mg_update_ratio = |Δ| / |Δ_nll|.

  Step k's key gives (MG key, NLL key) = jax.random.split(k), with the steps' keys
  jax.random.split(key, steps). mg_loss(φ, state, key) -> (loss, metrics) is the MG term
  (a model-gradient loss), nll_loss(φ, state, key) -> scalar the NLL on a minibatch it draws.
  """
  hp = state.hparams
  separate = getattr(state, "mg_opt", None) is not None

  def step(s, k):
    mkey, bkey = jax.random.split(k)
    (mg, _), g_mg = jax.value_and_grad(mg_loss, has_aux=True)(s.model_params, s, mkey)
    nll, g_nll = jax.value_and_grad(nll_loss)(s.model_params, s, bkey)
    nll_grads = jax.tree.map(lambda b: hp["mle_weight"] * b, g_nll)
    without, nll_opt = optimizer.update(nll_grads, s.model_opt, s.model_params)
    if separate:
      clipped, mg_norm = combine_model_grads(
        g_mg, g_nll, mle_weight=0.0, max_norm=hp["mg_max_grad_norm"]
      )
      mg_step, mg_opt = optimizer.update(clipped, s.mg_opt, s.model_params)
      updates = jax.tree.map(lambda a, b: a + mg_weight * b, without, mg_step)
      s = s.replace(model_opt=nll_opt, mg_opt=mg_opt)
    else:
      grads, mg_norm = combine_model_grads(
        g_mg, g_nll, mle_weight=hp["mle_weight"], max_norm=hp["mg_max_grad_norm"], weight=mg_weight
      )
      updates, opt = optimizer.update(grads, s.model_opt, s.model_params)
      s = s.replace(model_opt=opt)
    s = s.replace(model_params=optax.apply_updates(s.model_params, updates))
    max_norm = hp["mg_max_grad_norm"]
    metrics = {
      "mg_loss": mg + hp["mle_weight"] * nll,
      "mg_grad_norm": mg_norm,
      "mg_grad_norm_clipped": jnp.where(max_norm > 0, jnp.minimum(mg_norm, max_norm), mg_norm),
      "mg_nll_grad_norm": optax.tree.norm(g_nll),
      "mg_update_cos": _cosine(updates, without),
      "mg_update_ratio": optax.tree.norm(updates) / (optax.tree.norm(without) + 1e-30),
    }
    return s, metrics

  state, metrics = jax.lax.scan(step, state, jax.random.split(key, steps))
  return state, {n: (jnp.mean(v) if steps else _NAN) for n, v in metrics.items()}


MG_FIT_METRICS = (
  "mg_loss",
  "mg_grad_norm",
  "mg_grad_norm_clipped",
  "mg_nll_grad_norm",
  "mg_update_cos",
  "mg_update_ratio",
)
