"""Timings and FLOP counts of the training programs (`experiments/bench_speed.py`): medians of
jitted calls, the named stages of an iteration as programs of their own, the FLOPs of the SAC
family's kernels counted from the network shapes, and the machine's matmul peak."""

import functools
import statistics
import time
from typing import Any

import jax
import jax.numpy as jnp


def timed(fn, *args, repeats: int) -> float:
  """Median wall time of fn(*args) over `repeats` calls after one warm-up call."""
  jax.block_until_ready(fn(*args))
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - t)
  return statistics.median(times)


def stage_inputs(algorithm: Any, su: Any, states, *, outputs: bool = False):
  """The named stages of one iteration of each run in `states` (vmapped over its leading
  axis), composed as the iteration composes them: `algorithm.start`, each stage of
  `algorithm.stages(su, states)` in order, `algorithm.finish` (`mgjax.algorithms.mg`,
  `mgjax.algorithms.mbpo`) -> {name: (stage.fn with `su` bound, (the carry it got, stacked
  over the runs),)}, in order. `jax.vmap(fn)` of those args is then the stage as a program
  of its own, on the data it had in the loop. With `outputs=True` -> (that dict, the
  iteration's (state, metrics)), from the same program."""
  stages = algorithm.stages(su, states)

  def record(state):
    carry, inputs = algorithm.start(su, state), {}
    for stage in stages:
      inputs[stage.name] = carry
      carry = stage.fn(su, carry)
    return (inputs, algorithm.finish(su, carry)) if outputs else inputs

  got = jax.jit(jax.vmap(record))(states)
  inputs = got[0] if outputs else got
  bound = {s.name: (functools.partial(s.fn, su), (inputs[s.name],)) for s in stages}
  return (bound, got[1]) if outputs else bound


# ------------------------------------------------------------------------------ FLOPs
def mlp_flops(batch: int, sizes) -> tuple[int, int]:
  """FLOPs of a dense MLP's forward pass on `batch` rows, 2·B·Σ n_i·n_(i+1) (multiply-adds
  of its matmuls; activations and biases are not counted), and those of its first layer."""
  layers = [2 * batch * i * o for i, o in zip(sizes[:-1], sizes[1:])]
  return sum(layers), layers[0]


def sac_update_flops(batch: int, obs: int, act: int, hidden, num_q: int = 2) -> int:
  """FLOPs of one `sac_update`, counted from the network shapes. A backward pass costs a
  forward for the weight gradients and one for the input gradients (but the first layer's).
    critic step: actor on s', num_q target critics, num_q critics forward and backward;
    actor step: actor forward and backward, num_q critics forward and back to the action."""
  f_a, first_a = mlp_flops(batch, [obs, *hidden, 2 * act])
  f_q, first_q = mlp_flops(batch, [obs + act, *hidden, 1])
  critic = f_a + num_q * f_q + num_q * (3 * f_q - first_q)
  actor = (3 * f_a - first_a) + num_q * 2 * f_q
  return critic + actor


def ensemble_step_flops(members: int, batch: int, obs: int, act: int, hidden) -> int:
  """FLOPs of one ensemble training step: every member forward and backward on its own
  minibatch (inputs obs+act, outputs mean and log-std of Δobs and reward)."""
  f, first = mlp_flops(batch, [obs + act, *hidden, 2 * (obs + 1)])
  return members * (3 * f - first)


# Matmuls timed by `matmul_peak`: (batch, m, k, n), a batch of independent [m,k]·[k,n].
MATMULS = {
  "2048_cube": (1, 2048, 2048, 2048),  # the machine's peak
  "256_wide": (1, 4096, 256, 256),
  "sac_layer": (1, 256, 256, 256),  # a hidden layer of SAC's networks, batch 256
  "ensemble_layer": (7, 256, 200, 200),  # a hidden layer of 7 members, 256 rows each
  "rollout_layer": (1, 100_000, 200, 200),  # a hidden layer of one elite on 100k rollouts
  "rollout_block_layer": (5, 20_000, 200, 200),  # 5 elites on 20k rollouts each (block)
}


def matmul_peak(repeats: int) -> dict:
  """The machine's f32 matmul throughput (GFLOP/s): the 2048³ peak, and the shapes of the SAC
  family's hidden layers, which bound what its kernels can reach."""
  out = {}
  for name, (b, m, k, n) in MATMULS.items():
    x = jax.random.normal(jax.random.key(0), (b, m, k))
    w = jax.random.normal(jax.random.key(1), (b, k, n))
    mm = jax.jit(lambda x, w: jnp.einsum("bmk,bkn->bmn", x, w))
    out[f"matmul_{name}_gflops"] = 2 * b * m * k * n / timed(mm, x, w, repeats=repeats) / 1e9
  return out


def kernel(fn, args, flops: int, peak: float, repeats: int, calls: int = 1) -> dict:
  """Time of one call of a kernel, its FLOPs (ours and XLA's count) and the share of the
  peak. With calls > 1, `fn` makes that many calls in one program (a lax.scan, as in the
  training loop), and the figures are per call (XLA's cost analysis counts a loop's body
  once, so its count is one call's already)."""
  compiled = jax.jit(fn).lower(*args).compile()
  t = timed(compiled, *args, repeats=repeats) / calls
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return {
    "s": t,
    "flops": flops,
    "xla_flops": float(cost.get("flops", float("nan"))),
    "gflops": flops / t / 1e9,
    "of_peak": flops / t / 1e9 / peak,
  }
