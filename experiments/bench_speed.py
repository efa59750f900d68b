"""Speed figures, each a ratio of two timings taken in the same run (same machine, same load).

  python experiments/bench_speed.py                       # hopper, writes results/speed.json
  python experiments/bench_speed.py --env hopper --compile-envs hopper walker2d halfcheetah ant

(a) collection: env steps/s of the training loop's collect stage vs raw jitted stepping of the
    same env and batch (zero actions, same auto-reset wrapper) in a lax.scan;
(b) one mg iteration vs one mle iteration, and one model-gradient step vs one NLL step;
(c) one evaluation chunk with 1, 2, 4, 8 vmapped seeds vs 1 seed;
(d) compile time of the jitted evaluation chunk per env (mg).
Timings are medians of --repeats runs after a warm-up call; compile times are single runs.
"""
import argparse
import dataclasses
import json
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
warnings.filterwarnings("ignore", message="Brax System, piplines and environments")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from mgjax import train as T  # noqa: E402
from mgjax.config import Config  # noqa: E402
from mgjax import outputs  # noqa: E402


def timed(fn, *args, repeats: int) -> float:
  """Median wall time of fn(*args) over `repeats` calls after one warm-up call."""
  jax.block_until_ready(fn(*args))
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - t)
  return statistics.median(times)


def _filled_state(comp, key):
  """A train state after one iteration, so buffers and statistics are realistic."""
  state = jax.jit(lambda k: T.init_state(comp, k))(key)
  state, _ = jax.jit(lambda s: T.iteration(comp, s))(state)
  return state


def collection(config: Config, repeats: int) -> dict:
  comp = T.make_components(config)
  state = _filled_state(comp, jax.random.key(0))
  collect = jax.jit(lambda s, k: T.collect(comp, s, k))
  env = comp.train_env
  zeros = jnp.zeros((config.num_envs, comp.env.action_size))

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
    comp = T.make_components(dataclasses.replace(config, algo=algo))
    state = _filled_state(comp, jax.random.key(0))
    out[f"{algo}_iteration_s"] = timed(jax.jit(lambda s: T.iteration(comp, s)), state,
                                       repeats=repeats)
  out["mg_over_mle_iteration"] = out["mg_iteration_s"] / out["mle_iteration_s"]

  comp = T.make_components(dataclasses.replace(config, algo="mg", mg_steps=1, mle_steps=1))
  state = _filled_state(comp, jax.random.key(0))
  real_grad = jax.tree.map(jnp.ones_like, state.agent_params["policy"])
  mg_step = jax.jit(lambda s, k: T.fit_model_mg(comp, s, k, real_grad))
  nll_step = jax.jit(lambda s, k: T.fit_model_mle(comp, s, k))
  out["mg_step_s"] = timed(mg_step, state, jax.random.key(2), repeats=repeats)
  out["nll_step_s"] = timed(nll_step, state, jax.random.key(2), repeats=repeats)
  out["mg_step_over_nll_step"] = out["mg_step_s"] / out["nll_step_s"]
  return out


def seed_scaling(config: Config, repeats: int, counts=(1, 2, 4, 8)) -> dict:
  trainer = T.make_trainer(config)
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
    trainer = T.make_trainer(dataclasses.replace(config, env=env))
    keys = jax.random.split(jax.random.key(0), 1)
    t = time.perf_counter()
    state = jax.jit(jax.vmap(trainer.init))(keys)
    jax.jit(jax.vmap(trainer.chunk)).lower(state).compile()
    out[env] = time.perf_counter() - t
  return out


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
  args = p.parse_args(argv)
  from benchmark import parse_set  # same directory
  config = Config(env=args.env, **parse_set(args.set))
  report = {"machine": {"platform": platform.platform(), "device": jax.devices()[0].device_kind,
                        "cpu_count": __import__("os").cpu_count()},
            "versions": outputs.package_versions(), "config": dataclasses.asdict(config)}
  report["collection"] = collection(config, args.repeats)
  print(json.dumps(report["collection"], indent=1), flush=True)
  report["iterations"] = iterations(config, args.repeats)
  print(json.dumps(report["iterations"], indent=1), flush=True)
  report["seed_scaling"] = seed_scaling(config, max(1, args.repeats // 2), args.seed_counts)
  print(json.dumps(report["seed_scaling"], indent=1), flush=True)
  report["compile_s"] = compile_times(config, args.compile_envs or [args.env])
  print(json.dumps(report["compile_s"], indent=1), flush=True)
  out = Path(args.out)
  out.parent.mkdir(parents=True, exist_ok=True)
  outputs.write_json(out, report)
  print(f"wrote {out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
