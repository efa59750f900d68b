"""Model fitting by maximum likelihood on a replay buffer, and the MG+NLL gradient mix.

`fit_mle` is K_mle Adam steps on buffer minibatches; `combine_model_grads` is how every MG
fit (`mg`, `mg-sac`) adds the MG term's gradient to the NLL's.
"""
from typing import Callable

import jax
import jax.numpy as jnp
import optax

from mgjax.buffer import ReplayBuffer, buffer_sample
from mgjax.optim import apply_gradients
from mgjax.types import Params

NLLLoss = Callable[[Params, dict], jax.Array]  # (model params, rows [B]) -> scalar


def fit_mle(params: Params, opt_state: optax.OptState, buffer: ReplayBuffer, key: jax.Array,
            *, loss: NLLLoss, optimizer: optax.GradientTransformation, steps: int,
            batch_size: int) -> tuple[Params, optax.OptState, jax.Array]:
  """`steps` steps of `loss` on uniform minibatches of `batch_size` buffer rows
  -> (params, opt_state, mean loss; NaN when steps = 0)."""
  def step(carry, k):
    p, o = carry
    nll, grads = jax.value_and_grad(loss)(p, buffer_sample(buffer, k, batch_size))
    return apply_gradients(optimizer, p, o, grads), nll

  (params, opt_state), nll = jax.lax.scan(step, (params, opt_state),
                                          jax.random.split(key, steps))
  return params, opt_state, (jnp.mean(nll) if steps else jnp.float32(jnp.nan))


def combine_model_grads(g_mg: Params, g_nll: Params, *, mle_weight: jax.Array,
                        max_norm: jax.Array) -> tuple[Params, jax.Array]:
  """scale · g_mg + mle_weight · g_nll, with scale = min(1, max_norm / |g_mg|) clipping the MG
  term to a global norm of max_norm (0: no clipping) -> (gradient, |g_mg|).

  Score-function gradients scale with 1/σ of a sharp model and can be orders of magnitude
  larger than the NLL gradient; clipping keeps their noise from swamping the fit.
  """
  mg_norm = optax.tree.norm(g_mg)
  scale = jnp.where(max_norm > 0, jnp.minimum(1.0, max_norm / (mg_norm + 1e-8)), 1.0)
  grads = jax.tree.map(lambda a, b: scale * a + mle_weight * b, g_mg, g_nll)
  return grads, mg_norm
