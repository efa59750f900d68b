"""Speed figures, each a ratio of two timings taken in the same run (same machine, same load).

  python experiments/bench_speed.py                       # hopper, writes results/speed.json
  python experiments/bench_speed.py --env hopper --compile-envs hopper walker2d halfcheetah ant

(a) collection: env steps/s of the training loop's collect stage vs raw jitted stepping of the
    same env and batch (zero actions, same auto-reset wrapper) in a lax.scan;
(b) one mg iteration vs one mle iteration, and one model-gradient step vs one NLL step;
(c) one evaluation chunk with 1, 2, 4, 8 vmapped seeds vs 1 seed, and the same ratio for each
    stage of an mg iteration and for raw MJX stepping of one flat batch of as many envs
    (with --set env_group=G, also the chunk and collection with all envs stepped at once);
(d) compile time of the jitted evaluation chunk per env (mg);
(e) roofline: the machine's f32 matmul peak; the FLOPs (counted from the network shapes) of
    one SAC update, one ensemble training step and one branched-rollout step at mbpo's
    settings for --env (the rollout step with each `elite_draw`), their time and share of
    the peak; and a real run segment of mbpo and mg-sac (--segment-algos;
    --segment-iterations iterations from a fresh start, each stage of the iteration a
    program of its own): seconds per 1000 env steps in SAC updates, model
    fitting, MG steps, the alignment diagnostic, branched rollouts and env steps; with
    --variant-set, each segment again with those fields changed, and the speed-up;
(f) device_scaling: one evaluation chunk of --device-runs seeds sharded over 1, 2, 4 devices
    (`--host-devices 4` splits a CPU into 4 XLA devices: a functional check, not a speed-up).
Timings are medians of --repeats runs after a warm-up call; compile times are single runs.
`--sections` runs some of them and merges them into an existing --out file.
"""

import dataclasses
import functools
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path

warnings.filterwarnings("ignore", message="Brax System, piplines and environments")

if "--host-devices" in sys.argv:  # must reach XLA before jax starts
  _n = sys.argv[sys.argv.index("--host-devices") + 1]
  os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={_n}"
  )

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from lab import sac_speed, speed  # noqa: E402
from lab.speed import timed  # noqa: E402

from mgjax import make_config, make_trainer  # noqa: E402
from mgjax.algorithms import mg  # noqa: E402
from mgjax.config import Config  # noqa: E402
from mgjax.envs.core import batched_reset, batched_step  # noqa: E402
from mgjax.run import outputs  # noqa: E402
from mgjax.run.cli import Parser, parse_set  # noqa: E402


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

  # The training loop's collect stage, as the iteration calls it.
  collect = jax.jit(lambda s: mg.collect_batch(su, s, s.key)[1].obs)
  env = su.train_env
  zeros = jnp.zeros((config.num_envs, su.env.action_size))

  @jax.jit
  def raw(env_state):
    return jax.lax.scan(
      lambda s, _: (env.step(s, zeros), ()), env_state, None, length=config.rollout_length
    )[0]

  steps = config.num_envs * config.rollout_length
  t_collect = timed(collect, state, repeats=repeats)
  t_raw = timed(raw, state.env_state, repeats=repeats)
  return {
    "env": config.env,
    "num_envs": config.num_envs,
    "steps": steps,
    "collect_steps_per_s": steps / t_collect,
    "raw_steps_per_s": steps / t_raw,
    "collect_over_raw": t_raw / t_collect,
  }


def iterations(config: Config, repeats: int) -> dict:
  out = {}
  for algo in ("mg", "mle"):
    su = _setup(dataclasses.replace(config, algo=algo))
    state = _filled_state(su, jax.random.key(0))
    out[f"{algo}_iteration_s"] = timed(
      jax.jit(lambda s: mg.iteration(su, s)), state, repeats=repeats
    )
  out["mg_over_mle_iteration"] = out["mg_iteration_s"] / out["mle_iteration_s"]

  su = _setup(dataclasses.replace(config, algo="mg", mg_steps=1, mle_steps=1))
  state = _filled_state(su, jax.random.key(0))
  real_grad = jax.tree.map(jnp.ones_like, state.agent_params["policy"])
  mg_step = jax.jit(lambda s, k: mg.fit_model_mg(su, s, k, real_grad))
  nll_step = jax.jit(lambda s, k: mg.nll_steps(su, s, k))  # mle_steps = 1, as in `fit_model`
  out["mg_step_s"] = timed(mg_step, state, jax.random.key(2), repeats=repeats)
  out["nll_step_s"] = timed(nll_step, state, jax.random.key(2), repeats=repeats)
  out["mg_step_over_nll_step"] = out["mg_step_s"] / out["nll_step_s"]
  return out


def _in_groups(f, n: int, group: int):
  """vmap(f) over n runs, `group` at a time, the groups one after another (lax.map)."""

  def grouped(x):
    x = jax.tree.map(lambda a: a.reshape((n // group, group) + a.shape[1:]), x)
    y = jax.lax.map(jax.vmap(f), x)
    return jax.tree.map(lambda a: a.reshape((n,) + a.shape[2:]), y)

  return grouped


def seed_scaling(
  config: Config, repeats: int, counts=(1, 2, 4, 8), group: int | None = None
) -> dict:
  """One evaluation chunk with n vmapped seeds, and where its growth comes from: each stage
  of an mg iteration (`mg.stages`, each on the data it has in an iteration) and
  the evaluation vmapped over n seeds, and raw MJX stepping (zero actions, 32 steps) of
  one flat batch of n·num_envs envs, all relative to n = counts[0]. With `group`, also the
  chunk of n seeds vmapped `group` at a time, the groups in sequence ("chunk_grouped"),
  for each n that `group` divides into several groups. With `config.env_group`, also the
  chunk and the collection with all envs stepped at once ("chunk_all_envs",
  "collect_all_envs") and raw stepping of the flat batch n·env_group envs at a time, as
  the vmapped collection steps it ("raw_mjx_grouped")."""
  trainer = make_trainer(config)
  su = trainer.setup
  chunk = jax.jit(jax.vmap(trainer.chunk))
  iteration = jax.jit(jax.vmap(lambda s: mg.iteration(su, s)[0]))
  evaluation = jax.jit(jax.vmap(lambda s: mg.evaluate(su, s, s.key)["eval_return"]))
  if config.env_group:
    flat = make_trainer(dataclasses.replace(config, env_group=0))
    flat_chunk = jax.jit(jax.vmap(flat.chunk))
  env = su.env.env
  out = {}
  for n in counts:
    state = jax.jit(jax.vmap(trainer.init))(jax.random.split(jax.random.key(0), n))
    t = {"chunk": timed(lambda s: chunk(s)[1], state, repeats=repeats)}
    if config.env_group:
      t["chunk_all_envs"] = timed(lambda s: flat_chunk(s)[1], state, repeats=repeats)
    if group and n > group and n % group == 0:
      grouped = jax.jit(_in_groups(trainer.chunk, n, group))
      t["chunk_grouped"] = timed(lambda s: grouped(s)[1], state, repeats=repeats)
    state = iteration(state)
    stages = speed.stage_inputs(mg, su, state)
    for name, (stage, args) in stages.items():
      t[name] = timed(jax.jit(jax.vmap(stage)), *args, repeats=repeats)
    t["evaluation"] = timed(evaluation, state, repeats=repeats)
    if config.env_group:  # the collect stage of the flat setup, on the same carry
      collect = next(s.fn for s in mg.stages(su, state) if s.name == "collect")
      flat_collect = jax.jit(jax.vmap(functools.partial(collect, flat.setup)))
      t["collect_all_envs"] = timed(flat_collect, *stages["collect"][1], repeats=repeats)
    batch = n * config.num_envs
    env_state = jax.jit(lambda k: batched_reset(env, jax.random.split(k, batch)))(jax.random.key(0))
    zeros = jnp.zeros((batch, su.env.action_size))

    def raw(group):  # 32 steps of the flat batch, `group` envs at a time (0: all)
      return jax.jit(
        lambda s: (
          jax.lax.scan(lambda s, _: (batched_step(env, s, zeros, group), ()), s, None, length=32)[
            0
          ].obs
        )
      )

    t["raw_mjx_flat_batch"] = timed(raw(0), env_state, repeats=repeats)
    if config.env_group:  # the same batch stepped n·env_group at a time, as in collection
      t["raw_mjx_grouped"] = timed(raw(n * config.env_group), env_state, repeats=repeats)
    out[n] = t
    print(n, {k: round(v, 3) for k, v in t.items()}, flush=True)
  first = out[counts[0]]
  return {
    "group": group,
    "seconds": {str(n): t for n, t in out.items()},
    "time_over_first": {
      str(n): {k: v / first.get(k, first["chunk"]) for k, v in t.items()} for n, t in out.items()
    },
  }


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
  return {
    "runs": runs,
    "devices": [str(d) for d in jax.devices()][: max(counts)],
    "chunk_s": {str(n): t for n, t in out.items()},
    "speedup_over_1_device": {str(n): out[counts[0]] / t for n, t in out.items()},
  }


SECTIONS = ("collection", "iterations", "seed_scaling", "compile_s", "roofline", "device_scaling")


def _parser() -> Parser:
  """The flags: the env, the repeats, the sections and where their figures go, then those
  of device_scaling and of the roofline."""
  p = Parser(description=__doc__)
  p.add_argument("--env", default="hopper")
  p.add_argument(
    "--compile-envs",
    nargs="*",
    default=None,
    help="envs for the compile-time figure (default: --env)",
  )
  p.add_argument("--repeats", type=int, default=5)
  p.add_argument("--seed-counts", type=int, nargs="*", default=[1, 2, 4, 8])
  p.add_argument(
    "--vmap-group",
    type=int,
    default=None,
    help="seed_scaling also times each count's chunk vmapped this many seeds at "
    "a time, the groups in sequence",
  )
  p.add_argument("--out", default="results/speed.json")
  p.add_argument(
    "--set",
    action="append",
    default=[],
    metavar="FIELD=VALUE",
    help="override a Config field (as in benchmark.py)",
  )
  p.add_argument(
    "--sections",
    nargs="*",
    default=list(SECTIONS),
    choices=SECTIONS,
    help="figures to measure (default all); others are kept from --out",
  )
  _add_device_flags(p)
  _add_roofline_flags(p)
  return p


def _add_device_flags(p: Parser) -> None:
  """The flags of device_scaling (--host-devices is read from sys.argv before jax starts)."""
  p.add_argument(
    "--host-devices",
    type=int,
    default=None,
    help="split the CPU into N XLA devices (the functional check of "
    "device_scaling on a machine without accelerators)",
  )
  p.add_argument("--device-runs", type=int, default=8, help="seeds in device_scaling")
  p.add_argument(
    "--device-counts",
    type=int,
    nargs="*",
    default=[1, 2, 4],
    help="device counts of device_scaling (each must divide --device-runs)",
  )


def _add_roofline_flags(p: Parser) -> None:
  """The flags of the roofline's run segments and their configs."""
  p.add_argument(
    "--segment-iterations",
    type=int,
    default=4,
    help="timed iterations of the roofline's run segments (250 env steps each "
    "at MBPO's settings; 0: no segments)",
  )
  p.add_argument(
    "--segment-algos",
    nargs="+",
    default=["mbpo", "mg-sac"],
    choices=["mbpo", "mg-sac"],
    help="the algorithms of the run segments",
  )
  p.add_argument(
    "--sac-set",
    action="append",
    default=[],
    metavar="FIELD=VALUE",
    help="override a field of the roofline's mbpo/mg-sac configs (their presets "
    "otherwise), e.g. to time a CPU configuration",
  )
  p.add_argument(
    "--variant-set",
    action="append",
    default=[],
    metavar="FIELD=VALUE",
    help="time each run segment a second time in the same run with these fields "
    "changed as well, e.g. a CPU configuration against the preset",
  )


def _report_start(out: Path, config: Config) -> dict:
  """The report in `out` (empty if there is none), its machine, versions and config
  replaced by this run's."""
  report = json.loads(out.read_text()) if out.is_file() else {}
  report.update(
    {
      "machine": {
        "platform": platform.platform(),
        "device": jax.devices()[0].device_kind,
        **outputs.host(),
      },
      "versions": outputs.package_versions(),
      "config": dataclasses.asdict(config),
    }
  )
  return report


def _runs(args, config: Config) -> dict:
  """Each section's name and a function that measures it with the parsed flags."""
  return {
    "collection": lambda: collection(config, args.repeats),
    "iterations": lambda: iterations(config, args.repeats),
    "seed_scaling": lambda: seed_scaling(
      config, max(1, args.repeats // 2), args.seed_counts, args.vmap_group
    ),
    "compile_s": lambda: compile_times(config, args.compile_envs or [args.env]),
    "roofline": lambda: sac_speed.roofline(
      args.env,
      args.repeats,
      args.segment_iterations,
      parse_set(args.sac_set),
      args.segment_algos,
      parse_set(args.variant_set),
    ),
    "device_scaling": lambda: device_scaling(
      config, max(1, args.repeats // 2), args.device_runs, args.device_counts
    ),
  }


def main(argv=None) -> int:
  args = _parser().parse_args(argv)
  config = make_config(env=args.env, **parse_set(args.set))  # with the algorithm's preset
  out = Path(args.out)
  report = _report_start(out, config)
  runs = _runs(args, config)
  for name in SECTIONS:
    if name in args.sections:
      # A roofline without segments (--segment-iterations 0) keeps the segments measured before.
      report[name] = (
        {**report.get(name, {}), **runs[name]()} if name == "roofline" else runs[name]()
      )
      print(json.dumps(report[name], indent=1), flush=True)
  out.parent.mkdir(parents=True, exist_ok=True)
  outputs.write_json(out, report)
  print(f"wrote {out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
