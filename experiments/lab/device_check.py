"""A prepared check of an accelerator, in under 8 minutes (`experiments/device_check.py` is
its command line), and the same check at tiny sizes on a CPU.

Parts, each with its own time limit; a part that fails or runs out of time is recorded and
the next one runs:
  platform  the backend, its devices and their memory, the package versions, the matmul
            precision (set explicitly, "highest" by default) and a float32 matmul's error
            and rate under it;
  mg        `mg` on hopper, 5 seeds vmapped, 100k env steps with evaluations every 5
            iterations (the `cpu` benchmark suite's cell), through `mgjax.run.run`: wall,
            compile and train time (RESULTS.md's CPU table has the same cell); a run the
            limit stops early is paused, and its wall time extrapolated;
  mbpo      `mbpo` at MBPO's published hopper settings, 5 seeds vmapped: compile times,
            then iterations from a fresh start (after the 5000 random steps and one
            warm-up iteration) in seconds per 1000 env steps for all seeds, the phase of
            RESULTS.md's CPU segment ("MBPO and mg-sac: where the time goes");
  sac       the same for `sac` at its hopper settings;
  smoke     every other algorithm of the registry at small sizes on hopper, through
            `mgjax.run.run` paused after its first chunk: compile, one evaluation chunk,
            finite metrics.
With `cpu=True` the same parts run on pointmass (a rehearsal and a test), 2 seeds, the
CPU split as `experiments/benchmark.py` splits it: `mg` and the smoke part at the `smoke`
benchmark suite's sizes, so that they run the compiled programs of the suite's cells (a
compilation cache that holds them, as the test session's does, makes them hits), and the
iteration timings of `mbpo` and `sac` at tiny sizes.

On an accelerator every part runs in a process of its own, killed at its limit (what it had
measured by then is kept), so that a hung compile cannot take the others' time; with
`isolate=False` the parts run in this process and their limits are checked between steps.
"""

import functools
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable, NamedTuple

from lab.device_check_parts import (
  config_of,
  full_run_part,
  iterations_part,
  one_line,
  platform_part,
  sac_family_small,
  small,
  smoke_part,
  smoke_suite,
)

PRECISIONS = ("default", "high", "highest", "bfloat16", "tensorfloat32", "float32")
PARTS = ("platform", "mg", "mbpo", "sac", "smoke")
TIMED = ("mg", "mbpo", "sac")  # the algorithms with a part of their own


class Part(NamedTuple):
  """A part of the check: its name, its time limit and `fn(emit, deadline) -> record`,
  which reports what it has measured so far through `emit(record)`."""

  name: str
  limit_s: float
  fn: Callable[[Callable[[dict], None], float], dict]


CPU_SEEDS = 2  # the smoke benchmark suite's


def parts(cpu: bool) -> list[Part]:
  """The check's parts, with their limits (seconds): for an accelerator, at most 420 s in
  all (plus the processes' start); on a CPU at tiny sizes."""
  from mgjax.algorithms import REGISTRY, run_schedule

  others = [a for a in REGISTRY if a not in TIMED]
  if cpu:
    seeds = smoke_seeds = CPU_SEEDS
    mg = smoke_suite("mg")
    mbpo, sac = sac_family_small("pointmass"), sac_family_small("pointmass")
    smoke = smoke_suite
    limits = dict(platform=30, mg=60, mbpo=60, sac=60, smoke=120)
    iters = 2
  else:
    seeds, smoke_seeds = 5, 1
    # The cpu benchmark suite's cell (evaluations every 5 iterations, 102,400 env steps).
    mg = dict(env="hopper", total_steps=100_000, eval_every=5)
    mbpo, sac = dict(env="hopper"), dict(env="hopper")  # the published settings (presets)
    smoke = functools.partial(small, env="hopper")
    limits = dict(platform=30, mg=130, mbpo=100, sac=50, smoke=110)
    iters = 4  # 5,250 -> 6,250 env steps, RESULTS.md's CPU segment
  steps = run_schedule(config_of("mg", mg)).env_steps
  return [
    Part("platform", limits["platform"], platform_part),
    Part("mg", limits["mg"], functools.partial(full_run_part, "mg", mg, seeds, steps)),
    Part("mbpo", limits["mbpo"], functools.partial(iterations_part, "mbpo", mbpo, seeds, iters)),
    Part("sac", limits["sac"], functools.partial(iterations_part, "sac", sac, seeds, iters)),
    Part("smoke", limits["smoke"], functools.partial(smoke_part, others, smoke, smoke_seeds)),
  ]


# ------------------------------------------------------------------------------ running
def _in_process(part: Part, limit: float) -> dict:
  got: dict[str, Any] = {}
  deadline = time.time() + limit
  try:
    got.update(part.fn(lambda r: got.update(r), deadline), status="ok")
  except Exception as e:
    got.update(
      status="failed", error=one_line(e), traceback=traceback.format_exc().splitlines()[-6:]
    )
  if got["status"] == "ok" and time.time() > deadline:
    got["status"] = "over_limit"
  return got


def _isolated(part: Part, limit: float, options: dict) -> dict:
  """The part in a process of its own, killed at `limit` seconds; what it had emitted is
  kept."""
  with tempfile.TemporaryDirectory(prefix="mgjax-device-check-") as tmp:
    result = Path(tmp) / "part.json"
    cmd = [
      sys.executable,
      "-m",
      "lab.device_check",
      part.name,
      str(result),
      json.dumps({**options, "limit_s": limit}),
    ]
    # mgjax importable, installed or not, and the lab beside the scripts
    here = Path(__file__).resolve()
    paths = [str(here.parents[2]), str(here.parents[1]), os.environ.get("PYTHONPATH")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, paths))}
    proc = subprocess.Popen(
      cmd,
      stdout=subprocess.PIPE,
      stderr=subprocess.PIPE,
      text=True,
      start_new_session=True,
      env=env,
    )
    try:
      _, err = proc.communicate(timeout=limit)
      status = "ok" if proc.returncode == 0 else "failed"
    except subprocess.TimeoutExpired:
      os.killpg(proc.pid, 9)
      _, err = proc.communicate()
      status = "timeout"
    got = json.loads(result.read_text()) if result.exists() else {}
  if status == "failed" and "error" not in got:
    lines = [line for line in err.splitlines() if line.strip()]
    got["error"] = lines[-1] if lines else f"exit status {proc.returncode}"
  got.setdefault("status", status)
  if status != "ok":
    got["status"] = status
  return got


def _child(name: str, result: str, options_json: str) -> int:
  """Runs one part (in the process `_isolated` started); its record goes to `result` as
  it grows."""
  options = json.loads(options_json)
  _configure(options)
  part = next(p for p in parts(options["cpu"]) if p.name == name)
  path = Path(result)

  def emit(rec):
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(rec, default=str))
    tmp.replace(path)

  deadline = time.time() + options["limit_s"] - 5.0
  try:
    emit({**part.fn(emit, deadline), "status": "ok"})
  except Exception as e:
    prev = json.loads(path.read_text()) if path.exists() else {}
    emit({**prev, "status": "failed", "error": one_line(e)})
    return 1
  return 0


def _configure(options: dict) -> dict[str, Any]:
  """The matmul precision and the compilation cache, before anything compiles, and on a
  CPU its split into devices (as benchmark.py's for CPU_SEEDS seeds; it takes effect only
  before JAX has started its backends); returns what they replaced (for `_restore`)."""
  import warnings

  import jax

  from mgjax.algorithms import REGISTRY
  from mgjax.run import compile_cache
  from mgjax.run.placement import cpu_devices, split_cpu

  if options["cpu"]:
    split_cpu(max(cpu_devices(algo, CPU_SEEDS) for algo in REGISTRY))

  warnings.filterwarnings("ignore", message="Brax System, piplines and environments")
  before = {"precision": jax.config.jax_default_matmul_precision, **compile_cache.settings()}
  jax.config.update("jax_default_matmul_precision", options["precision"])
  compile_cache.enable(options["compile_cache"])
  return before


def _restore(before: dict[str, Any]) -> None:
  import jax

  from mgjax.run import compile_cache

  jax.config.update("jax_default_matmul_precision", before["precision"])
  compile_cache.restore(before)


def check(
  out: Path,
  *,
  cpu: bool = False,
  precision: str = "highest",
  budget_s: float = 470.0,
  isolate: bool | None = None,
  compile_cache: bool = True,
  only: tuple[str, ...] = (),
  limits: dict[str, float] | None = None,
  log=functools.partial(print, flush=True),
) -> dict:
  """Runs the parts (`only` some of them) within `budget_s` seconds in all, each within its
  limit (`limits` overrides some), and writes the record to `out` after each part;
  returns it. On an accelerator (cpu=False) the parts are isolated by default, on a CPU
  they run in this process."""
  isolate = (not cpu) if isolate is None else isolate
  options = {"cpu": cpu, "precision": precision, "compile_cache": compile_cache}
  before = None if isolate else _configure(options)
  try:
    return _check(out, options, budget_s, isolate, only, limits, log)
  finally:
    if before is not None:  # the caller's settings again
      _restore(before)


def _check(out: Path, options: dict, budget_s: float, isolate: bool, only, limits, log) -> dict:
  cpu, precision = options["cpu"], options["precision"]
  todo = [
    p._replace(limit_s=(limits or {}).get(p.name, p.limit_s))
    for p in parts(cpu)
    if not only or p.name in only
  ]
  start = time.time()
  record = {
    "mode": "cpu" if cpu else "accelerator",
    "precision": precision,
    "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    "budget_s": budget_s,
    "isolated": isolate,
    "parts": {},
  }
  out.parent.mkdir(parents=True, exist_ok=True)
  for i, part in enumerate(todo):
    # Each part gets its limit, less what the later parts need at least (15 s each).
    limit = min(part.limit_s, budget_s - (time.time() - start) - 15.0 * (len(todo) - i - 1))
    if limit < min(15.0, part.limit_s):
      got = {"status": "skipped", "error": "no time left in the budget"}
    else:
      log(f"[device_check] {part.name}: up to {limit:.0f}s")
      t = time.time()
      got = _isolated(part, limit, options) if isolate else _in_process(part, limit)
      got.update(limit_s=limit, elapsed_s=time.time() - t)
    record["parts"][part.name] = got
    if part.name == "platform" and not cpu and got.get("backend") == "cpu":
      record["error"] = (
        "no accelerator: JAX sees only CPU devices (install the CUDA build of jax, or use --cpu)"
      )
      _write(out, record, start)
      return record
    log(
      f"[device_check] {part.name}: {got['status']}"
      + (f" ({got['error']})" if got.get("error") else "")
    )
    _write(out, record, start)
  return _write(out, record, start)


def algorithms_summary(record: dict) -> dict[str, str]:
  """The outcome of every algorithm whose part ran: "ok" (compiled, ran, finite metrics),
  or what went wrong."""
  from mgjax.algorithms import REGISTRY

  out = {}
  for algo in TIMED:
    got = record["parts"].get(algo)
    if got is not None:
      # Compiled and ran with finite metrics, even where the part then ran out of time.
      ok = got["status"] != "failed" and got.get("finite") is True
      out[algo] = (
        "ok"
        if ok
        else (got.get("error") or f"{got['status']}, finite metrics: {got.get('finite')}")
      )
  smoke = record["parts"].get("smoke")
  if smoke is not None:
    for algo in (a for a in REGISTRY if a not in TIMED):
      got = smoke.get(algo)
      if not isinstance(got, dict):
        out[algo] = (
          f"not reached (the smoke part: {smoke.get('status')}"
          + (f", {smoke['error']}" if smoke.get("error") else "")
          + ")"
        )
      else:
        out[algo] = "ok" if got["status"] == "ok" else got.get("error") or got["status"]
  return out


def _write(out: Path, record: dict, start: float) -> dict:
  record["elapsed_s"] = time.time() - start
  record["algorithms"] = algorithms_summary(record)
  tmp = out.with_suffix(".tmp")
  tmp.write_text(json.dumps(record, indent=1, default=str) + "\n")
  tmp.replace(out)
  return record


if __name__ == "__main__":
  sys.exit(_child(*sys.argv[1:4]))
