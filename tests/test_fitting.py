"""The MG fit's step (`mgjax.models.fitting.fit_model_mg`): the shared and the separate
optimiser, by hand on losses with known gradients, and the metrics of how far the MG term
moves the model."""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import struct

from mgjax.models.fitting import MG_FIT_METRICS, fit_model_mg
from mgjax.optim import adam

A = jnp.array([30.0, -40.0, 0.0])  # g_mg = A: |g_mg| = 50
C = jnp.array([1.0, 2.0, -2.0])  # g_nll = φ − C


@struct.dataclass
class State:
  model_params: Any
  model_opt: Any
  hparams: dict
  mg_opt: Any = None


def mg_loss(phi, state, key):
  del state, key
  return jnp.vdot(A, phi), {}


def nll_loss(phi, state, key):
  del state, key
  return 0.5 * jnp.sum(jnp.square(phi - C))


OPT = adam(1e-2)


def _state(separate, mle_weight=1.0, max_norm=10.0):
  phi = jnp.zeros(3)
  return State(
    phi,
    OPT.init(phi),
    {"mle_weight": jnp.float32(mle_weight), "mg_max_grad_norm": jnp.float32(max_norm)},
    OPT.init(phi) if separate else None,
  )


def _fit(state, weight, steps=1):
  return jax.jit(
    lambda s: fit_model_mg(
      s,
      jax.random.key(0),
      mg_loss=mg_loss,
      nll_loss=nll_loss,
      optimizer=OPT,
      steps=steps,
      mg_weight=weight,
    )
  )(state)


def _cos(a, b):
  return float(jnp.vdot(a, b) / (jnp.linalg.norm(a) * jnp.linalg.norm(b)))


@pytest.mark.parametrize("separate", [False, True])
def test_one_step_by_hand(separate):
  w, lam = 0.5, 2.0
  state = _state(separate, mle_weight=lam)
  after, metrics = _fit(state, w)
  assert set(metrics) == set(MG_FIT_METRICS)
  g_nll = lam * (state.model_params - C)
  g_mg = A * (10.0 / 50.0)  # clipped to norm 10
  without, _ = OPT.update(g_nll, state.model_opt)
  if separate:  # Δ = Adam(λ g_nll) + w · Adam'(clip(g_mg)), each with its own moments
    mg_step, _ = OPT.update(g_mg, state.mg_opt)
    step = without + w * mg_step
  else:  # one Adam step on w · clip(g_mg) + λ g_nll
    step, _ = OPT.update(w * g_mg + g_nll, state.model_opt)
  np.testing.assert_allclose(after.model_params, state.model_params + step, rtol=1e-6)
  np.testing.assert_allclose(metrics["mg_grad_norm"], 50.0, rtol=1e-6)
  np.testing.assert_allclose(metrics["mg_grad_norm_clipped"], 10.0, rtol=1e-6)
  np.testing.assert_allclose(metrics["mg_nll_grad_norm"], 3.0, rtol=1e-6)  # |φ − C| = 3
  np.testing.assert_allclose(metrics["mg_update_cos"], _cos(step, without), rtol=1e-5)
  np.testing.assert_allclose(
    metrics["mg_update_ratio"], jnp.linalg.norm(step) / jnp.linalg.norm(without), rtol=1e-5
  )
  assert float(metrics["mg_update_cos"]) < 0.99  # the MG term turns the step


def test_separate_moments_advance_apart_and_zero_weight_is_the_nll_step():
  state = _state(True)
  after, metrics = _fit(state, 0.0, steps=3)
  nll_only, _ = _fit(_state(True, max_norm=10.0).replace(mg_opt=None), 0.0, steps=3)
  np.testing.assert_allclose(after.model_params, nll_only.model_params, rtol=1e-6)
  np.testing.assert_allclose(metrics["mg_update_cos"], 1.0, rtol=1e-6)
  np.testing.assert_allclose(metrics["mg_update_ratio"], 1.0, rtol=1e-6)
  # The MG state saw only clipped g_mg: its first moment is the mean of three of them.
  mu_mg = after.mg_opt.inner_state[0].mu
  mu_nll = after.model_opt.inner_state[0].mu
  expected_mu = (1 - 0.9**3) * A * 0.2
  np.testing.assert_allclose(mu_mg, expected_mu, rtol=1e-5)
  assert not np.allclose(mu_nll, mu_mg)


def test_no_clip_and_no_steps():
  _, metrics = _fit(_state(False, max_norm=0.0), 1.0)
  np.testing.assert_allclose(metrics["mg_grad_norm_clipped"], 50.0, rtol=1e-6)
  _, metrics = _fit(_state(False), 1.0, steps=0)
  assert all(np.isnan(v) for v in metrics.values())


def test_shared_step_is_the_clipped_sum_through_one_optimiser():
  """The default reproduces the earlier update: apply_gradients on scale·g_mg + λ g_nll."""
  state = _state(False)
  after, _ = _fit(state, 1.0)
  expected = optax.apply_updates(
    state.model_params, OPT.update(0.2 * A + (state.model_params - C), state.model_opt)[0]
  )
  np.testing.assert_array_equal(after.model_params, expected)
