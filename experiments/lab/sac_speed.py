"""The SAC family's speed (`experiments/bench_speed.py --sections roofline`): the hot kernels
of `mbpo` against the machine's matmul peak, and a real run segment split by stage."""

import dataclasses
import functools
import json
import time

import jax
import jax.numpy as jnp
from lab import speed

from mgjax.algorithms import make_trainer


def sac_setup(algo: str, env: str, overrides: dict):
  """`algo` at its preset for `env` with `overrides` -> (config, setup, a fresh state)."""
  from mgjax.algorithms import make_config, mbpo

  c = make_config(algo=algo, env=env, **overrides)
  su = make_trainer(c).setup
  return c, su, jax.jit(lambda k: mbpo.init(su, k))(jax.random.key(0))


# The Config fields the kernels' record keeps.
_KERNEL_CONFIG = (
  "sac_batch",
  "sac_hidden",
  "ensemble_size",
  "elites",
  "mle_batch",
  "model_hidden",
  "rollout_batch",
)


def _kernel_fns(c, su, calls: int):
  """mbpo's hot kernels as functions of (state, key): `calls` SAC updates on a mixed
  minibatch and `calls` ensemble training steps, each in one scan as they run in the loop;
  and `rollout_step(elite_draw)`, one step of every branched rollout under that draw."""
  from mgjax.algorithms import mbpo
  from mgjax.algorithms import sac as sac_loop
  from mgjax.models.ensemble import member_minibatches
  from mgjax.models.nll import ensemble_nll_loss
  from mgjax.optim import apply_gradients

  window = jnp.int32(c.rollout_batch)
  mixed = lambda s, k: mbpo.sac_batch(
    s.buffer, s.model_buffer, k, window, batch_size=su.sac.sac_batch, real_ratio=su.mbpo.real_ratio
  )

  def sac_updates(s, k):  # `calls` updates in a scan, as between two env steps
    step = lambda s, k: sac_loop.sac_step(su, s, k, mixed)
    return jax.lax.scan(step, s, jax.random.split(k, calls))[0].sac

  def ensemble_steps(s, k):  # `calls` steps of fit_ensemble's inner loop
    def step(carry, k):
      params, opt = carry
      rows = member_minibatches(s.buffer, k, su.fit.members, su.fit.batch_size)
      grads = jax.grad(ensemble_nll_loss)(params, rows, net=su.model_net, stats=s.obs_stats)
      return apply_gradients(su.model_optimizer, params, opt, grads), ()

    return jax.lax.scan(step, (s.model_params, s.model_opt), jax.random.split(k, calls))[0]

  def rollout_step(draw):  # one step of every branched rollout, the predicted states kept
    su_draw = dataclasses.replace(su, mbpo=dataclasses.replace(su.mbpo, elite_draw=draw))

    def step(s, k):
      buf = mbpo.branched_rollouts(su_draw, s, k, jnp.int32(1)).model_buffer
      return jax.lax.dynamic_slice_in_dim(
        buf.data["next_obs"], s.model_buffer.position, c.rollout_batch
      )

    return step

  return sac_updates, ensemble_steps, rollout_step


def kernels(env: str, repeats: int, peak: float, overrides: dict) -> dict:
  """The hot kernels of mbpo at its preset for `env`: one SAC update on a mixed minibatch and
  one ensemble training step (each timed over 20 in one scan, as they run in the loop), and
  one branched-rollout step of all rollout_batch rollouts under each elite_draw."""
  from mgjax.algorithms import mbpo

  c, su, state = sac_setup("mbpo", env, overrides)
  state = jax.jit(lambda s, k: mbpo.branched_rollouts(su, s, k, jnp.int32(1)))(
    state, jax.random.key(1)
  )
  D, A = su.env.obs_size, su.env.action_size
  key, calls = jax.random.key(2), 20
  sac_updates, ensemble_steps, rollout_step = _kernel_fns(c, su, calls)
  f_model, _ = speed.mlp_flops(c.rollout_batch, [D + A, *c.model_hidden, 2 * (D + 1)])
  f_actor, _ = speed.mlp_flops(c.rollout_batch, [D, *c.sac_hidden, 2 * A])
  out = {
    "config": {k: getattr(c, k) for k in _KERNEL_CONFIG},
    "sac_update": speed.kernel(
      sac_updates,
      (state, key),
      speed.sac_update_flops(c.sac_batch, D, A, c.sac_hidden),
      peak,
      repeats,
      calls,
    ),
    "ensemble_step": speed.kernel(
      ensemble_steps,
      (state, key),
      speed.ensemble_step_flops(c.ensemble_size, c.mle_batch, D, A, c.model_hidden),
      peak,
      repeats,
      calls,
    ),
    # elite_draw "row": every elite predicts every row (one is then drawn per row), as
    # MBPO does.
    "rollout_step": speed.kernel(
      rollout_step("row"), (state, key), c.elites * f_model + f_actor, peak, max(1, repeats // 2)
    ),
  }
  if c.rollout_batch % c.elites == 0:  # "block": each row is predicted by its elite alone
    out["rollout_step_block"] = speed.kernel(
      rollout_step("block"), (state, key), f_model + f_actor, peak, max(1, repeats // 2)
    )
  return out


def segment(algo: str, env: str, iterations: int, overrides: dict) -> dict:
  """A real run segment: `algo` at its preset for `env` from a fresh start, `iterations`
  iterations of `mbpo.iteration` after one warm-up iteration, each named stage jitted as a
  program of its own and timed. The env steps' share of `act_and_update` is that stage
  again on the same state with no SAC updates. Seconds per 1000 env steps, per stage."""
  from mgjax.algorithms import mbpo

  c, su, state = sac_setup(algo, env, overrides)
  no_updates = dataclasses.replace(su, sac=dataclasses.replace(su.sac, updates_per_step=0))
  stages = mbpo.stages(su, state)
  compiled = {s.name: jax.jit(functools.partial(s.fn, su)) for s in stages}
  act = next(s.fn for s in stages if s.name == "act_and_update")
  compiled["env_steps"] = jax.jit(functools.partial(act, no_updates))

  def run_iteration(state, spent):
    carry = mbpo.start(su, state)
    for name in [s.name for s in stages]:
      for timed_name in ("env_steps", name) if name == "act_and_update" else (name,):
        t = time.perf_counter()
        out = jax.block_until_ready(compiled[timed_name](carry))
        spent[timed_name] = spent.get(timed_name, 0.0) + time.perf_counter() - t
      carry = out
    return mbpo.finish(su, carry)

  state, _ = run_iteration(state, {})  # compiles every stage
  spent, metrics = {}, []
  for _ in range(iterations):
    state, m = run_iteration(state, spent)
    metrics.append({k: float(m[k]) for k in ("model_epochs", "branch_length")})
  per_1000 = 1000 / (iterations * c.batch_steps)
  split = {name: t * per_1000 for name, t in spent.items()}
  split["sac_updates"] = split.pop("act_and_update") - split["env_steps"]
  return {
    "algo": algo,
    "env": env,
    "iterations": iterations,
    "env_steps": [int(state.env_steps) - iterations * c.batch_steps, int(state.env_steps)],
    "per_iteration": metrics,
    "s_per_1000_env_steps": split,
    "total_s_per_1000_env_steps": sum(split.values()),
  }


def roofline(
  env: str,
  repeats: int,
  iterations: int,
  overrides: dict,
  algos=("mbpo", "mg-sac"),
  variant: dict | None = None,
) -> dict:
  """The matmul peak, the hot kernels' share of it, and a real segment of each of `algos`;
  with `variant`, each segment again with those fields changed too, and the ratio of the
  two totals (segment / variant: the variant's speed-up)."""
  peak = speed.matmul_peak(repeats)
  out = {"peak": peak, "kernels": kernels(env, repeats, peak["matmul_2048_cube_gflops"], overrides)}
  print(json.dumps(out, indent=1), flush=True)
  for algo in algos if iterations else ():
    base = out[f"segment_{algo}"] = segment(algo, env, iterations, overrides)
    print(json.dumps(base, indent=1), flush=True)
    if variant:
      other = segment(algo, env, iterations, {**overrides, **variant})
      other["variant"] = variant
      other["speedup"] = base["total_s_per_1000_env_steps"] / other["total_s_per_1000_env_steps"]
      out[f"segment_{algo}_variant"] = other
      print(json.dumps(other, indent=1), flush=True)
  return out
