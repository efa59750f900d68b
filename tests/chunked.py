"""Shared by the end-to-end tests: a trainer's chunks, vmapped over seeds, traced once."""

import chex
import jax
import jax.numpy as jnp
import numpy as np

import mgjax


def run_chunks(config, seeds: int):
  """Every chunk of `config` for seeds 0..seeds-1, one jitted vmapped program that may trace
  only once -> (trainer, final state, metrics with leaves [seeds, chunks, ...])."""
  trainer = mgjax.make_trainer(config)
  keys = jax.vmap(jax.random.key)(jnp.arange(seeds, dtype=jnp.uint32))
  state = jax.jit(jax.vmap(trainer.init))(keys)

  @chex.assert_max_traces(n=1)
  def traced_chunk(s):
    return trainer.chunk(s)

  chunk = jax.jit(jax.vmap(traced_chunk))
  metrics = []
  for _ in range(trainer.num_chunks):
    state, m = chunk(state)
    metrics.append(jax.tree.map(np.asarray, m))
  return trainer, state, jax.tree.map(lambda *x: np.stack(x, 1), *metrics)
