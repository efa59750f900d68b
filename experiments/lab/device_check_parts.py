"""The parts of the accelerator check (`lab.device_check` runs them): the sizes they run
at, and what each measures.

  platform_part    the backend, its devices and their memory, the package versions, the
                   matmul precision and a float32 matmul's error and rate under it;
  full_run_part    `mgjax.run.run` of one algorithm, paused at the deadline: wall, compile
                   and train time, the wall time of all its env steps extrapolated;
  iterations_part  compile times, then iterations from a fresh start in seconds per 1000
                   env steps;
  smoke_part       each algorithm through `mgjax.run.run`, paused after its first chunk:
                   compile, one evaluation chunk, finite metrics.

Each takes `emit(record)`, through which it reports what it has measured so far, and the
deadline (time.time()) it should finish by.
"""

import functools
import tempfile
import time
from pathlib import Path
from typing import Any, Callable


# ------------------------------------------------------------------------------ sizes
def mg_family_small(env: str) -> dict[str, Any]:
  """A few iterations of mg/mle/ppo with small networks and batches."""
  return dict(
    env=env,
    num_envs=4,
    rollout_length=8,
    eval_every=2,
    total_steps=4 * 8 * 2 * 2,
    num_eval_envs=2,
    episode_length=50,
    policy_hidden=(16, 16),
    value_hidden=(16, 16),
    model_hidden=(16, 16),
    mle_steps=2,
    mle_batch=32,
    mg_steps=1,
    mg_rollouts=8,
    mg_horizon=3,
    model_rollouts=16,
    model_horizon=3,
    model_updates=1,
    num_minibatches=2,
    buffer_size=1000,
  )


def sac_family_small(env: str) -> dict[str, Any]:
  """100 random steps, then iterations of 25 env steps, with small networks and batches."""
  return dict(
    env=env,
    exploration_steps=100,
    rollout_length=25,
    eval_every=2,
    total_steps=200,
    num_eval_envs=2,
    episode_length=50,
    model_hidden=(16, 16),
    sac_hidden=(16, 16),
    ensemble_size=3,
    elites=2,
    rollout_batch=32,
    updates_per_step=1,
    sac_batch=32,
    mle_batch=32,
    model_max_epochs=2,
    model_epoch_steps=5,
    branch_schedule=(0, 1, 1, 2),
    buffer_size=1000,
    mg_rollouts=8,
    mg_horizon=2,
  )


def small(algo: str, env: str) -> dict[str, Any]:
  """Small sizes for `algo`: those of SAC's loop if it explores before its first iteration
  (mbpo, mg-sac, sac), else mg's."""
  from mgjax.algorithms import get_algorithm
  from mgjax.config import Config

  sac_loop = get_algorithm(algo).initial_steps(Config(exploration_steps=1)) > 0
  return (sac_family_small if sac_loop else mg_family_small)(env)


def config_of(algo: str, fields: dict[str, Any]):
  """`algo`'s Config: its preset with `fields` on top."""
  from mgjax.algorithms import make_config

  return make_config(**{**fields, "algo": algo})


def smoke_suite(algo: str) -> dict[str, Any]:
  """The Config fields of the smoke benchmark suite's `algo` cell on pointmass."""
  import dataclasses

  from lab.suites import SUITES

  return dataclasses.asdict(SUITES["smoke"].config(algo, "pointmass", {}))


# ------------------------------------------------------------------------------ measuring
def _finite(metrics: dict, names) -> dict[str, bool]:
  import numpy as np

  return {n: bool(np.all(np.isfinite(np.asarray(metrics[n])))) for n in names if n in metrics}


def _timed(fn, *args):
  """(result, seconds) of fn(*args), waiting for it."""
  import jax

  t = time.perf_counter()
  out = jax.block_until_ready(fn(*args))
  return out, time.perf_counter() - t


def platform_part(emit, deadline: float) -> dict:
  """The backend, devices, memory, versions and the matmul precision's effect."""
  import jax
  import jax.numpy as jnp
  import numpy as np

  from mgjax.run import outputs

  devices = jax.devices()
  rec = {
    "backend": jax.default_backend(),
    "platform_version": devices[0].client.platform_version,
    "devices": [
      {
        "id": d.id,
        "kind": d.device_kind,
        "platform": d.platform,
        "memory": {
          k: v
          for k, v in (d.memory_stats() or {}).items()
          if k in ("bytes_limit", "bytes_in_use", "peak_bytes_in_use", "bytes_reservable_limit")
        },
      }
      for d in devices
    ],
    "matmul_precision": jax.config.jax_default_matmul_precision,
    "versions": outputs.package_versions(),
    "host": outputs.host(),
  }
  emit(rec)
  n = 2048 if rec["backend"] != "cpu" else 256
  a, b = (np.random.default_rng(i).standard_normal((n, n), dtype=np.float32) for i in (0, 1))
  matmul = jax.jit(jnp.matmul)
  out, _ = _timed(matmul, a, b)  # compiles
  reps = [_timed(matmul, a, b)[1] for _ in range(5)]
  exact = a.astype(np.float64) @ b.astype(np.float64)
  rec["matmul_f32"] = {
    "n": n,
    "tflops": 2 * n**3 / min(reps) / 1e12,
    "max_rel_error": float(np.max(np.abs(np.asarray(out) - exact)) / np.max(np.abs(exact))),
  }
  return rec


def full_run_part(algo: str, fields: dict, seeds: int, steps: int, emit, deadline: float) -> dict:
  """`mgjax.run.run` of `algo` for `seeds` seeds, paused at the deadline: wall, compile and
  train time, and the wall time of all `steps` env steps (extrapolated if paused)."""
  from mgjax.run import outputs, run

  config = config_of(algo, fields)
  logged = []

  def log(line: str) -> None:
    logged.append(line)
    if line.startswith("compiled in"):  # kept if the part is stopped at its limit
      emit({"algo": algo, "env": config.env, "seeds": seeds, "compile_s": _compile_s(logged)})

  with tempfile.TemporaryDirectory(prefix="mgjax-device-check-") as out:
    start = time.time()
    margin = min(30.0, 0.25 * (deadline - start))  # for the chunk that ends past the limit
    s = run(
      config,
      seeds=list(range(seeds)),
      out=Path(out),
      progress=False,
      log=log,
      time_limit_s=max(0.0, deadline - start - margin),
      save_every_s=1e9,
    )
    rows = outputs.read_metrics(Path(out) / "metrics.csv")
  wall = time.time() - start
  done = int(s["total_env_steps"])
  compile_s = _compile_s(logged)
  train_s = s.get("train_time_s", wall - (compile_s or 0.0))
  rec = {
    "algo": algo,
    "env": config.env,
    "seeds": seeds,
    "run_status": s["status"],
    "env_steps_per_seed": done,
    "wall_s": wall,
    "compile_s": compile_s,
    "train_s": train_s,
    "wall_s_for_all_steps": wall
    if done >= steps
    else (compile_s or 0.0) + train_s * steps / max(done, 1),
    "steps": steps,
    "final_eval_return_mean": s.get("final_eval_return_mean"),
    "finite": bool(rows) and all(r["eval_return"] not in ("", "nan") for r in rows),
  }
  return rec


def _compile_s(logged: list[str]) -> float | None:
  """The seconds of the runner's "compiled in 12.3s (...)" line."""
  return next(
    (float(line.split()[2].rstrip("s")) for line in logged if line.startswith("compiled in")), None
  )


def iterations_part(
  algo: str, fields: dict, seeds: int, max_iterations: int, emit, deadline: float
) -> dict:
  """Compile times, then iterations of `algo` (seeds vmapped) from a fresh start: one
  warm-up, then up to `max_iterations` while the deadline allows, in seconds per 1000 env
  steps for all seeds together; the watched metrics must stay finite."""
  import jax

  from mgjax.algorithms import make_trainer, watched

  config = config_of(algo, fields)
  trainer = make_trainer(config)
  keys = jax.random.split(jax.random.key(0), seeds)
  rec = {"algo": algo, "env": config.env, "seeds": seeds}
  t = time.perf_counter()
  init = jax.jit(jax.vmap(trainer.init)).lower(keys).compile()
  rec["compile_init_s"] = time.perf_counter() - t
  state, rec["init_s"] = _timed(init, keys)
  emit(rec)
  step = jax.jit(jax.vmap(functools.partial(trainer.algorithm.iteration, trainer.setup)))
  t = time.perf_counter()
  step = step.lower(state).compile()
  rec["compile_iteration_s"] = time.perf_counter() - t
  (state, metrics), rec["first_iteration_s"] = _timed(step, state)
  names = watched(config)
  finite = _finite(metrics, names)
  emit(rec)
  times = []
  while len(times) < max_iterations:
    left = deadline - time.time()
    if times and left < 1.5 * max(times) + 5.0:
      break
    (state, metrics), dt = _timed(step, state)
    times.append(dt)
    finite = {n: finite[n] and ok for n, ok in _finite(metrics, names).items()}
    rec.update(
      iterations=len(times),
      iteration_s=times,
      s_per_1000_env_steps=1000 * sum(times) / (len(times) * config.batch_steps),
      env_steps_at_start=trainer.schedule.initial_steps + config.batch_steps,
      finite=all(finite.values()),
      watched=finite,
    )
    emit(rec)
  rec["finite"] = all(finite.values())
  return rec


def smoke_part(algos, sizes: Callable[[str], dict], seeds: int, emit, deadline: float) -> dict:
  """Each algorithm at `sizes(algo)` through `mgjax.run.run` (`seeds` seeds, the devices
  a benchmark cell of it gets), paused after its first evaluation chunk: compile and wall
  times, and whether its evaluation and watched metrics are finite."""
  import numpy as np

  from mgjax.algorithms import watched
  from mgjax.run import outputs, run
  from mgjax.run.placement import default_devices

  rec: dict[str, Any] = {}
  for algo in algos:
    if time.time() > deadline:
      rec[algo] = {"status": "skipped", "error": "the part's time limit was reached"}
      continue
    try:
      config = config_of(algo, sizes(algo))
      logged: list[str] = []
      start = time.time()
      with tempfile.TemporaryDirectory(prefix="mgjax-device-check-") as out:
        s = run(
          config,
          seeds=list(range(seeds)),
          out=Path(out),
          progress=False,
          log=logged.append,
          devices=default_devices(algo),
          time_limit_s=0.0,  # one chunk, then a pause
          save_every_s=1e9,
        )
        rows = outputs.read_metrics(Path(out) / "metrics.csv")
      names = ["eval_return", *(n for n in watched(config) if rows and n in rows[0])]
      finite = {
        n: bool(rows) and all(np.isfinite(float(r[n] or "nan")) for r in rows) for n in names
      }
      rec[algo] = {
        "status": "ok"
        if s["status"] in ("paused", "finished") and all(finite.values())
        else "failed",
        "run_status": s["status"],
        "seeds": seeds,
        "compile_s": _compile_s(logged),
        "wall_s": time.time() - start,
        "env_steps_per_seed": int(s["total_env_steps"]),
        "finite": finite,
      }
    except Exception as e:  # recorded; the next algorithm runs
      rec[algo] = {"status": "failed", "error": one_line(e)}
    emit(rec)
  return rec


def one_line(e: BaseException) -> str:
  """The exception's type and the first line of its message."""
  text = str(e).strip().splitlines()
  return f"{type(e).__name__}: {text[0] if text else ''}"
