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
  g_mg: Params, g_nll: Params, *, mle_weight: jax.Array, max_norm: jax.Array
) -> tuple[Params, jax.Array]:
  """scale · g_mg + mle_weight · g_nll, with scale = min(1, max_norm / |g_mg|) clipping the MG
  term to a global norm of max_norm (0: no clipping) -> (gradient, |g_mg|).

  Score-function gradients scale with 1/σ of a sharp model and can be orders of magnitude
  larger than the NLL gradient; clipping keeps their noise from swamping the fit.
  """
  mg_norm = optax.tree.norm(g_mg)
  scale = jnp.where(max_norm > 0, jnp.minimum(1.0, max_norm / (mg_norm + 1e-8)), 1.0)
  grads = jax.tree.map(lambda a, b: scale * a + mle_weight * b, g_mg, g_nll)
  return grads, mg_norm


def fit_model_mg(
  state,
  key: jax.Array,
  *,
  mg_loss: StateMGLoss,
  nll_loss: StateNLLLoss,
  optimizer: optax.GradientTransformation,
  steps: int,
):
  """`steps` steps of L(φ) = −S-surrogate(ĝ_M(φ), g_R) + λ_mle · NLL(φ) on the model of an
  algorithm's state (`model_params`, `model_opt`; λ_mle = hparams["mle_weight"]), the MG
  term's gradient clipped to hparams["mg_max_grad_norm"] (`combine_model_grads`)
  -> (state, (mean loss, mean |g_mg|); NaN when steps = 0).

  Step k's key gives (MG key, NLL key) = jax.random.split(k), with the steps' keys
  jax.random.split(key, steps). mg_loss(φ, state, key) -> (loss, metrics) is the MG term
  (a model-gradient loss), nll_loss(φ, state, key) -> scalar the NLL on a minibatch it draws.
  """
  hp = state.hparams

  def step(s, k):
    mkey, bkey = jax.random.split(k)
    (mg, _), g_mg = jax.value_and_grad(mg_loss, has_aux=True)(s.model_params, s, mkey)
    nll, g_nll = jax.value_and_grad(nll_loss)(s.model_params, s, bkey)
    grads, mg_norm = combine_model_grads(
      g_mg, g_nll, mle_weight=hp["mle_weight"], max_norm=hp["mg_max_grad_norm"]
    )
    params, opt = apply_gradients(optimizer, s.model_params, s.model_opt, grads)
    s = s.replace(model_params=params, model_opt=opt)
    return s, (mg + hp["mle_weight"] * nll, mg_norm)

  state, (loss, mg_norm) = jax.lax.scan(step, state, jax.random.split(key, steps))
  if not steps:
    return state, (_NAN, _NAN)
  return state, (jnp.mean(loss), jnp.mean(mg_norm))
