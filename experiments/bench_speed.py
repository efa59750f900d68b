"""Speed figures, each a ratio of two timings taken in the same run (same machine, same load).

  python experiments/bench_speed.py                       # hopper, writes results/speed.json
  python experiments/bench_speed.py --env hopper --compile-envs hopper walker2d halfcheetah ant

(a) collection: env steps/s of the training loop's collect stage vs raw jitted stepping of the
    same env and batch (zero actions, same auto-reset wrapper) in a lax.scan;
(b) one mg iteration vs one mle iteration, and one model-gradient step vs one NLL step;
(c) one evaluation chunk with 1, 2, 4, 8 vmapped seeds vs 1 seed;
(d) compile time of the jitted evaluation chunk per env (mg);
(e) mbpo at its published settings for --env: one SAC update, one ensemble training step,
    one branched-rollout step of all rollout_batch rollouts and one env step, and from them
    the cost of 100k env steps (a lower bound: model rounds counted at the minimum of
    model_patience + 1 epochs), against one mg iteration's cost scaled to 100k env steps;
(f) device_scaling: one evaluation chunk of --device-runs seeds sharded over 1, 2, 4 devices
    (`--host-devices 4` splits a CPU into 4 XLA devices: a functional check, not a speed-up).
Timings are medians of --repeats runs after a warm-up call; compile times are single runs.
`--sections` runs some of them and merges them into an existing --out file.
"""
import argparse
import dataclasses
import json
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

warnings.filterwarnings("ignore", message="Brax System, piplines and environments")

if "--host-devices" in sys.argv:  # must reach XLA before jax starts
  _n = sys.argv[sys.argv.index("--host-devices") + 1]
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                             + f" --xla_force_host_platform_device_count={_n}")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from mgjax import make_trainer  # noqa: E402
from mgjax.algorithms import mg  # noqa: E402
from mgjax.config import Config  # noqa: E402
from mgjax.models import fit_mle  # noqa: E402
from mgjax.run import outputs  # noqa: E402


def timed(fn, *args, repeats: int) -> float:
  """Median wall time of fn(*args) over `repeats` calls after one warm-up call."""
  jax.block_until_ready(fn(*args))
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - t)
  return statistics.median(times)


def _setup(config: Config) -> mg.Setup:
  """The static parts of an mg/mle/ppo run of `config` (validated)."""
  return make_trainer(config).setup


def _filled_state(su: mg.Setup, key):
  """A train state after one iteration, so buffers and statistics are realistic."""
  state = jax.jit(lambda k: mg.init(su, k))(key)
  state, _ = jax.jit(lambda s: mg.iteration(su, s))(state)
  return state


def collection(config: Config, repeats: int) -> dict:
  su = _setup(config)
  state = _filled_state(su, jax.random.key(0))

  def collect(s, k):  # the training loop's collect stage, with its policy
    return mg.collect(su.train_env, su.nets.make_policy(s.obs_stats), s.agent_params["policy"],
                      s.env_state, k, rollout_length=su.rollout_length,
                      action_mode=su.action_mode)

  collect = jax.jit(collect)
  env = su.train_env
  zeros = jnp.zeros((config.num_envs, su.env.action_size))

  @jax.jit
  def raw(env_state):
    return jax.lax.scan(lambda s, _: (env.step(s, zeros), ()), env_state, None,
                        length=config.rollout_length)[0]

  steps = config.num_envs * config.rollout_length
  t_collect = timed(collect, state, jax.random.key(1), repeats=repeats)
  t_raw = timed(raw, state.env_state, repeats=repeats)
  return {"env": config.env, "num_envs": config.num_envs, "steps": steps,
          "collect_steps_per_s": steps / t_collect, "raw_steps_per_s": steps / t_raw,
          "collect_over_raw": t_raw / t_collect}


def iterations(config: Config, repeats: int) -> dict:
  out = {}
  for algo in ("mg", "mle"):
    su = _setup(dataclasses.replace(config, algo=algo))
    state = _filled_state(su, jax.random.key(0))
    out[f"{algo}_iteration_s"] = timed(jax.jit(lambda s: mg.iteration(su, s)), state,
                                       repeats=repeats)
  out["mg_over_mle_iteration"] = out["mg_iteration_s"] / out["mle_iteration_s"]

  su = _setup(dataclasses.replace(config, algo="mg", mg_steps=1, mle_steps=1))
  state = _filled_state(su, jax.random.key(0))
  real_grad = jax.tree.map(jnp.ones_like, state.agent_params["policy"])
  mg_step = jax.jit(lambda s, k: mg.fit_model_mg(su, s, k, real_grad))

  def nll_step(s, k):  # mle_steps = 1 NLL step on the buffer, as in `fit_model`
    return fit_mle(s.model_params, s.model_opt, s.buffer, k, loss=su.nll(s.obs_stats),
                   optimizer=su.model_optimizer, steps=su.mle_steps, batch_size=su.mle_batch)

  nll_step = jax.jit(nll_step)
  out["mg_step_s"] = timed(mg_step, state, jax.random.key(2), repeats=repeats)
  out["nll_step_s"] = timed(nll_step, state, jax.random.key(2), repeats=repeats)
  out["mg_step_over_nll_step"] = out["mg_step_s"] / out["nll_step_s"]
  return out


def seed_scaling(config: Config, repeats: int, counts=(1, 2, 4, 8)) -> dict:
  trainer = make_trainer(config)
  chunk = jax.jit(jax.vmap(trainer.chunk))
  out = {}
  for n in counts:
    state = jax.jit(jax.vmap(trainer.init))(jax.random.split(jax.random.key(0), n))
    out[n] = timed(lambda s: chunk(s)[1], state, repeats=repeats)
  return {"chunk_s": {str(n): t for n, t in out.items()},
          "time_over_1_seed": {str(n): t / out[counts[0]] for n, t in out.items()}}


def compile_times(config: Config, envs) -> dict:
  out = {}
  for env in envs:
    trainer = make_trainer(dataclasses.replace(config, env=env))
    keys = jax.random.split(jax.random.key(0), 1)
    t = time.perf_counter()
    state = jax.jit(jax.vmap(trainer.init))(keys)
    jax.jit(jax.vmap(trainer.chunk)).lower(state).compile()
    out[env] = time.perf_counter() - t
  return out


def mbpo_cost(env: str, repeats: int, mg_config: Config) -> dict:
  """Per-piece timings of mbpo at its preset for `env` and the implied cost of 100k steps."""
  from mgjax.algorithms import make_config, mbpo
  from mgjax.algorithms import sac as sac_loop  # the SAC stages mbpo's loop shares
  c = make_config(algo="mbpo", env=env, model_epoch_steps=20, model_max_epochs=1)
  su = make_trainer(c).setup
  state = jax.jit(lambda k: mbpo.init(su, k))(jax.random.key(0))
  state = jax.jit(lambda s, k: mbpo.branched_rollouts(su, s, k, jnp.int32(1)))(
      state, jax.random.key(1))
  window = jnp.int32(c.rollout_batch)
  mixed = lambda s, k: mbpo.sac_batch(s.buffer, s.model_buffer, k, window,
                                      batch_size=su.sac_batch, real_ratio=su.real_ratio)

  def sac_updates(s, k):  # 20 updates on mixed real/model minibatches, as between env steps
    step = lambda s, k: sac_loop.sac_step(su, s, k, mixed)
    return jax.lax.scan(step, s, jax.random.split(k, 20))[1]["critic_loss"]

  def env_steps(s, k):  # 250 single-env steps with random actions
    def one(s, k):
      a = jax.random.uniform(k, (c.num_envs, su.env.action_size), minval=-1.0, maxval=1.0)
      return mbpo.env_step(su.train_env, s, a), ()
    # Return the physics' output: a counter alone would let XLA drop the simulation.
    return jax.lax.scan(one, s, jax.random.split(k, 250))[0].env_state.obs

  key = jax.random.key(2)
  t_sac = timed(jax.jit(sac_updates), state, key, repeats=repeats) / 20
  t_model = timed(jax.jit(lambda s, k: mbpo.fit_model(su, s, k)[1]), state, key,
                  repeats=repeats) / 20
  def rollouts(s, k):  # the predicted states, not just the row count (see env_steps)
    buf = mbpo.branched_rollouts(su, s, k, jnp.int32(1)).model_buffer
    return jnp.sum(jax.lax.dynamic_slice_in_dim(buf.data["next_obs"], s.model_buffer.position,
                                                c.rollout_batch))

  t_roll = timed(jax.jit(rollouts), state, key, repeats=repeats)
  t_env = timed(jax.jit(env_steps), state, key, repeats=repeats) / 250

  # Rounds after exploration: real buffer size N_r, schedule length k_r.
  total = 100_000
  rounds = (total - c.exploration_steps) // c.batch_steps
  sizes = [c.exploration_steps + r * c.batch_steps for r in range(rounds)]
  lengths = [int(mbpo.branch_length(r * c.batch_steps // mbpo.EPOCH_LENGTH,
                                    c.branch_schedule)) for r in range(rounds)]
  epochs = c.model_patience + 1
  model_steps = sum(epochs * -(-int(0.8 * n) // c.mle_batch) for n in sizes)
  cost = {"sac_updates_s": (total - c.exploration_steps) * c.updates_per_step * t_sac,
          "model_training_s": model_steps * t_model, "rollouts_s": sum(lengths) * t_roll,
          "env_steps_s": total * t_env}
  mg_setup = _setup(dataclasses.replace(mg_config, algo="mg", env=env))
  mg_state = _filled_state(mg_setup, jax.random.key(0))
  t_mg = timed(jax.jit(lambda s: mg.iteration(mg_setup, s)), mg_state, repeats=repeats)
  mg_100k = t_mg * total / mg_config.batch_steps
  return {"env": env, "config": {k: getattr(c, k) for k in (
              "updates_per_step", "sac_batch", "sac_hidden", "ensemble_size", "model_hidden",
              "rollout_batch", "branch_schedule", "model_patience")},
          "sac_update_s": t_sac, "model_train_step_s": t_model,
          "rollout_step_s": t_roll, "env_step_s": t_env,
          "mbpo_100k_lower_bound_s": cost, "mbpo_100k_lower_bound_total_s": sum(cost.values()),
          "mg_iteration_s": t_mg, "mg_100k_s": mg_100k,
          "mbpo_over_mg_per_env_step": sum(cost.values()) / mg_100k}


def device_scaling(config: Config, repeats: int, runs: int, counts=(1, 2, 4)) -> dict:
  """One evaluation chunk of `runs` vmapped seeds sharded over 1, 2, 4, ... devices."""
  from jax.sharding import NamedSharding, PartitionSpec
  from mgjax.run import make_mesh
  trainer = make_trainer(config)
  counts = [n for n in counts if n <= len(jax.devices())]
  out = {}
  for n in counts:
    sharding = NamedSharding(make_mesh(n), PartitionSpec("runs"))
    keys = jax.device_put(jax.random.split(jax.random.key(0), runs), sharding)
    state = jax.jit(jax.vmap(trainer.init), out_shardings=sharding)(keys)
    chunk = jax.jit(jax.vmap(trainer.chunk), in_shardings=sharding, out_shardings=sharding)
    out[n] = timed(lambda s: chunk(s)[1], state, repeats=repeats)
  return {"runs": runs, "devices": [str(d) for d in jax.devices()][:max(counts)],
          "chunk_s": {str(n): t for n, t in out.items()},
          "speedup_over_1_device": {str(n): out[counts[0]] / t for n, t in out.items()}}


SECTIONS = ("collection", "iterations", "seed_scaling", "compile_s", "mbpo", "device_scaling")


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--env", default="hopper")
  p.add_argument("--compile-envs", nargs="*", default=None,
                 help="envs for the compile-time figure (default: --env)")
  p.add_argument("--repeats", type=int, default=5)
  p.add_argument("--seed-counts", type=int, nargs="*", default=[1, 2, 4, 8])
  p.add_argument("--out", default="results/speed.json")
  p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                 help="override a Config field (as in benchmark.py)")
  p.add_argument("--sections", nargs="*", default=list(SECTIONS), choices=SECTIONS,
                  help="figures to measure (default all); others are kept from --out")
  p.add_argument("--host-devices", type=int, default=None,
                 help="split the CPU into N XLA devices (the functional check of "
                      "device_scaling on a machine without accelerators)")
  p.add_argument("--device-runs", type=int, default=8, help="seeds in device_scaling")
  args = p.parse_args(argv)
  from benchmark import parse_set  # same directory
  config = Config(env=args.env, **parse_set(args.set))
  out = Path(args.out)
  report = json.loads(out.read_text()) if out.is_file() else {}
  report.update({"machine": {"platform": platform.platform(),
                             "device": jax.devices()[0].device_kind,
                             "cpu_count": __import__("os").cpu_count()},
                 "versions": outputs.package_versions(), "config": dataclasses.asdict(config)})
  runs = {
      "collection": lambda: collection(config, args.repeats),
      "iterations": lambda: iterations(config, args.repeats),
      "seed_scaling": lambda: seed_scaling(config, max(1, args.repeats // 2), args.seed_counts),
      "compile_s": lambda: compile_times(config, args.compile_envs or [args.env]),
      "mbpo": lambda: mbpo_cost(args.env, args.repeats, config),
      "device_scaling": lambda: device_scaling(config, max(1, args.repeats // 2),
                                               args.device_runs),
  }
  for name in SECTIONS:
    if name in args.sections:
      report[name] = runs[name]()
      print(json.dumps(report[name], indent=1), flush=True)
  out.parent.mkdir(parents=True, exist_ok=True)
  outputs.write_json(out, report)
  print(f"wrote {out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
