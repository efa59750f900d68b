"""Shared by the tests: a trainer's chunks, vmapped over seeds, traced once; the small
`mbpo` / `mg-sac` settings of the SAC family's stage tests; the command lines' small
pointmass flags."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np

import mgjax
from mgjax import model_gradient
from mgjax.agents import sac
from mgjax.buffer import buffer_sample

# Small pointmass runs: 2 evaluation chunks of 5 iterations x 512 env steps per seed. The
# smoke suite's settings (lab.suites), so that its mg and ppo cells (tests/experiments/
# test_benchmark.py) and these runs share their compiled programs through the session's cache.
POINTMASS = (
  "--env",
  "pointmass",
  "--total-steps",
  "5120",
  "--num-envs",
  "16",
  "--rollout-length",
  "32",
  "--eval-every",
  "5",
  "--num-eval-envs",
  "4",
  "--model-hidden",
  "32,32",
  "--mle-steps",
  "5",
  "--mg-steps",
  "1",
  "--mg-rollouts",
  "32",
  "--model-rollouts",
  "64",
  "--model-updates",
  "1",
  "--no-progress",
)


def with_flags(flags: tuple[str, ...], **values) -> tuple[str, ...]:
  """`flags` with the values of some flags replaced: with_flags(POINTMASS, num_envs=8)."""
  out = list(flags)
  for name, value in values.items():
    out[out.index("--" + name.replace("_", "-")) + 1] = str(value)
  return tuple(out)


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


# Sized for seconds on CPU: 50-step iterations after 500 random steps.
MBPO_SMALL = dict(
  algo="mbpo",
  env="pointmass",
  exploration_steps=500,
  rollout_length=50,
  eval_every=10,
  ensemble_size=3,
  elites=2,
  model_hidden=(64, 64),
  sac_hidden=(64, 64),
  rollout_batch=256,
  updates_per_step=5,
  sac_batch=128,
  model_max_epochs=5,
  model_epoch_steps=20,
  branch_schedule=(0, 2, 1, 5),
  num_eval_envs=8,
  sac_learning_rate=1e-3,
)
MG_SAC_STAGE = dict(mg_rollouts=32, mg_horizon=3, mg_steps=2)  # mg-sac's MG stage, small


def sac_target(su, state, buffer, sample_key, grad_key, states: int):
  """g_R from its formula: SAC's actor-loss gradient (the state's critics and α) on `states`
  states drawn from `buffer` with sample_key, the actions drawn with grad_key."""
  actor_loss = functools.partial(
    sac.actor_objective,
    q_params=state.sac.q,
    log_alpha=state.sac.log_alpha,
    q_fn=su.q_net.apply,
    actor_fn=su.actor_net.apply,
  )
  obs = buffer_sample(buffer, sample_key, states)["obs"]
  return model_gradient.actor_gradient(
    state.sac.actor, actor_loss=actor_loss, obs=obs, key=grad_key
  )
