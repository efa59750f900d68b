"""Tests for mgjax.models.ensemble: the split, and the budgeted fit. The early-stopping fit
(held-out NLL, early stopping, elites) is checked on an explored point-mass buffer in
test_mbpo.py."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mgjax import buffer, nets
from mgjax.models import ensemble
from mgjax.optim import adam


def test_holdout_split_partitions_the_buffer():
  n = 5 * 40
  train_idx = np.asarray(ensemble.split_index(jnp.arange(n - n // 5), held_out=False))
  hold_idx = np.asarray(ensemble.split_index(jnp.arange(n // 5), held_out=True))
  assert sorted(np.concatenate([train_idx, hold_idx]).tolist()) == list(range(n))
  assert np.all(hold_idx % 5 == 0) and np.all(train_idx % 5 != 0)
  assert ensemble.HOLDOUT_EVERY == 5  # MBPO's 20% split


def _random_buffer(key, size: int, capacity: int, obs_size: int = 4, action_size: int = 2):
  """A buffer of `size` rows of a random linear system (capacity fixed, so one compile)."""
  k1, k2, k3 = jax.random.split(key, 3)
  obs = jax.random.normal(k1, (size, obs_size))
  action = jax.random.uniform(k2, (size, action_size), minval=-1.0, maxval=1.0)
  next_obs = (
    obs
    + 0.1 * jnp.concatenate([action, action], -1)
    + 0.01 * jax.random.normal(k3, (size, obs_size))
  )
  new = buffer.rows(obs, action, jnp.sum(action, -1), next_obs, jnp.zeros(size))
  return buffer.buffer_add(
    buffer.buffer_init(buffer.empty_row(obs_size, action_size), capacity), new
  )


@pytest.mark.parametrize("epoch_steps", [0, 4])
def test_budgeted_fit_takes_the_budget_whatever_the_buffer_size(epoch_steps):
  """With model_fit_budget = 12, a fit takes 12 Adam steps on 200 rows and on 4000 (without a
  budget it takes one pass per epoch, so the count grows with the buffer)."""
  net = nets.make_model_network(4, 2, (16,), ensemble_size=3)
  optimizer = adam(1e-3)
  params = net.init(jax.random.key(0))
  fit = ensemble.EnsembleFit(
    members=3,
    batch_size=16,
    epoch_steps=epoch_steps,
    patience=5,
    max_epochs=50,
    elites=2,
    budget=12,
  )

  @jax.jit
  def steps_taken(buf, fit_key):
    _, opt, elites, metrics = ensemble.fit_ensemble(
      params,
      optimizer.init(params),
      buf,
      nets.init_stats(4),
      fit_key,
      net=net,
      optimizer=optimizer,
      fit=fit,
    )
    return opt.count, metrics["model_epochs"], elites

  for size in (200, 4000):
    count, epochs, elites = steps_taken(
      _random_buffer(jax.random.key(size), size, 4000), jax.random.key(1)
    )
    assert int(count) == 12, size
    assert int(epochs) == (12 // epoch_steps if epoch_steps else 1)
    assert sorted(set(np.asarray(elites).tolist())) == sorted(np.asarray(elites).tolist())


def test_budgeted_fit_warm_starts_and_keeps_the_best_held_out_snapshot():
  """Two budgeted fits in a row continue from where the first ended (warm start), and the
  second's held-out NLL of the elites is no worse than the first's."""
  net = nets.make_model_network(4, 2, (16,), ensemble_size=3)
  optimizer = adam(1e-2)
  fit = ensemble.EnsembleFit(3, 32, 10, 5, 50, 2, budget=40)
  buf = _random_buffer(jax.random.key(3), 2000, 2000)
  stats = nets.update_stats(nets.init_stats(4), buf.data["obs"])
  run = jax.jit(
    lambda p, o, k: ensemble.fit_ensemble(
      p, o, buf, stats, k, net=net, optimizer=optimizer, fit=fit
    )
  )
  params = net.init(jax.random.key(0))
  params1, opt1, _, m1 = run(params, optimizer.init(params), jax.random.key(1))
  _, opt2, _, m2 = run(params1, opt1, jax.random.key(2))
  assert int(opt1.count) == 40 and int(opt2.count) == 80
  assert float(m2["model_nll"]) <= float(m1["model_nll"])
