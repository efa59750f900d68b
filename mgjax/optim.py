"""Optimiser helpers shared by every fit: Adam with its learning rate as data, and one
gradient-application step."""

import jax
import jax.numpy as jnp
import optax

from mgjax.types import Params


def adam(learning_rate: float, max_grad_norm: float = 0.0) -> optax.GradientTransformation:
  """Adam (after global-norm clipping if max_grad_norm > 0) whose learning rate is a
  hyperparameter in its state, so that it can differ per vmapped run (`set_learning_rate`)."""

  def make(learning_rate):
    opt = optax.adam(learning_rate)
    return optax.chain(optax.clip_by_global_norm(max_grad_norm), opt) if max_grad_norm else opt

  return optax.inject_hyperparams(make)(learning_rate=learning_rate)


def set_learning_rate(opt_state, learning_rate: jax.Array):
  """The state of an `adam` optimizer with its learning rate replaced."""
  lr = jnp.asarray(learning_rate, opt_state.hyperparams["learning_rate"].dtype)
  return opt_state._replace(hyperparams={**opt_state.hyperparams, "learning_rate": lr})


def apply_gradients(
  optimizer: optax.GradientTransformation, params: Params, opt_state: optax.OptState, grads: Params
) -> tuple[Params, optax.OptState]:
  """One optimiser step: (params, opt_state) after `grads`."""
  updates, opt_state = optimizer.update(grads, opt_state, params)
  return optax.apply_updates(params, updates), opt_state
