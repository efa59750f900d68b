"""Benchmark suites: algorithms × environments × seeds, the seeds of a cell vmapped.

  python experiments/benchmark.py --suite cpu              # resumable; run again to continue
  python experiments/benchmark.py --suite smoke --results /tmp/smoke --runs /tmp/smoke-runs
  python experiments/benchmark.py --suite cpu --env hopper --algo mg   # one cell

Each finished cell's small files (metrics.csv, summary.json, config.json) are copied to
RESULTS/SUITE/ALGO-ENV/ at once and the cell is skipped on the next call; checkpoints stay
in RUNS/ (not committed). RESULTS/SUITE/metrics.csv gathers all finished cells for plot.py.
A cell saves a resume point in RUNS/ every --save-every minutes and the next call continues
it from there; --time-limit pauses the call (its cell's metrics so far are copied too).

  python experiments/benchmark.py --suite cpu --algo mbpo --env hopper --time-limit 150
"""

import json
import shutil
import sys
import time
import warnings
from pathlib import Path

warnings.filterwarnings("ignore", message="Brax System, piplines and environments")

from lab.suites import SUITES  # noqa: E402

from mgjax.algorithms import run_schedule  # noqa: E402
from mgjax.config import ConfigError  # noqa: E402
from mgjax.run import compile_cache  # noqa: E402
from mgjax.run.cli import Parser, parse_set  # noqa: E402

_KEEP = ("metrics.csv", "summary.json", "config.json")


def _finished(cell_dir: Path) -> bool:
  try:
    return json.loads((cell_dir / "summary.json").read_text())["status"] in ("finished", "diverged")
  except (OSError, ValueError, KeyError):
    return False


def gather(suite_dir: Path) -> Path:
  """Concatenates every cell's metrics.csv into SUITE/metrics.csv (columns of earlier
  versions under their current names); returns its path."""
  from mgjax.run import outputs

  out = suite_dir / "metrics.csv"
  outputs.concat_metrics(((p, {}) for p in sorted(suite_dir.glob("*/metrics.csv"))), out)
  return out


def _parser() -> Parser:
  p = Parser(description=__doc__)
  p.add_argument("--suite", default="cpu", help=f"one of {', '.join(SUITES)}")
  p.add_argument("--results", default="results", help="where the small per-cell files go")
  p.add_argument("--runs", default="runs/bench", help="where full run folders go")
  p.add_argument("--env", action="append", help="only these envs (repeatable)")
  p.add_argument("--algo", action="append", help="only these algorithms (repeatable)")
  p.add_argument("--seeds", type=int, default=None, help="override the suite's seed count")
  p.add_argument("--tag", default="", help="suffix of the suite folder (for ablations)")
  p.add_argument(
    "--set",
    action="append",
    default=[],
    metavar="FIELD=VALUE",
    help="override a Config field in every cell",
  )
  p.add_argument(
    "--devices",
    type=int,
    default=None,
    help="shard each cell's seeds over the first N devices (default all; a CPU "
    "is split into a device per core, or as many as divide the seeds evenly, "
    "and the SAC family's cells take its first device)",
  )
  p.add_argument(
    "--time-limit",
    type=float,
    default=None,
    metavar="MIN",
    help="pause (resumably) after the first evaluation chunk past MIN minutes; "
    "later cells are not started (the first one always is)",
  )
  p.add_argument(
    "--save-every",
    type=float,
    default=10.0,
    metavar="MIN",
    help="minutes between a cell's resume points (default 10)",
  )
  p.add_argument(
    "--no-memory-check",
    action="store_true",
    help="run a cell even where its memory estimate exceeds what is available",
  )
  compile_cache.add_flag(p)
  return p


def _checked(p: Parser, args):
  """(seeds, deadline, cells) of the parsed flags, the compilation cache enabled before
  the first compile; p.error on bad input."""
  try:  # before the first compile
    compile_cache.enable(not args.no_compile_cache)
  except compile_cache.CacheError as e:
    p.error(str(e))
  if args.time_limit is not None and not args.time_limit >= 0:
    p.error(f"time-limit={args.time_limit}: must be non-negative (minutes)")
  if not args.save_every > 0:
    p.error(f"save-every={args.save_every}: must be positive (minutes)")
  deadline = None if args.time_limit is None else time.time() + 60 * args.time_limit
  if args.suite not in SUITES:
    p.error(f"suite={args.suite!r}: unknown; choose one of {', '.join(SUITES)}")
  suite = SUITES[args.suite]
  seeds = args.seeds if args.seeds is not None else suite.seeds
  if seeds <= 0:
    p.error(f"seeds={seeds}: must be positive")
  try:
    cells = suite.cells(args.env, args.algo, parse_set(args.set))  # the SAC family's last
  except ConfigError as e:
    p.error(str(e))
  return seeds, deadline, cells


def main(argv=None) -> int:
  p = _parser()
  args = p.parse_args(argv)
  seeds, deadline, cells = _checked(p, args)

  from mgjax.run import LayoutError, check_layout, make_mesh
  from mgjax.run.placement import cpu_devices, split_cpu

  # On a CPU, a device per core for the cells whose algorithm gains from it (before JAX
  # starts); the others run on the first device.
  split_cpu(args.devices or max(cpu_devices(algo, seeds) for algo, _, _ in cells))
  try:
    check_layout(seeds, 1, make_mesh(args.devices))
  except LayoutError as e:
    p.error(str(e))
  name = args.suite + (f"-{args.tag}" if args.tag else "")
  suite_dir = Path(args.results) / name
  suite_dir.mkdir(parents=True, exist_ok=True)
  started = False
  for algo, env, config in cells:
    cell = f"{algo}-{env}"
    if _finished(suite_dir / cell):
      print(f"[{name}] {cell}: done, skipped")
      continue
    if deadline is not None and time.time() >= deadline and started:  # always run one
      print(f"[{name}] time limit reached; {cell} and later cells not started")
      break
    started = True
    _run_cell(p, args, name, suite_dir, cell, algo, config, seeds, deadline)
  print(f"[{name}] results in {gather(suite_dir)}")
  return 0


def _run_cell(p: Parser, args, name, suite_dir: Path, cell, algo, config, seeds, deadline) -> None:
  """One cell, in RUNS/SUITE/CELL (resumed from its resume point there, if any); then its
  small files copied to SUITE/CELL and the suite's metrics gathered. p.error on a resume
  point that does not fit or a failed memory check."""
  from mgjax.run import Divergence, MemoryCheckError, ResumeError, outputs, run
  from mgjax.run.placement import default_devices

  run_dir = Path(args.runs) / name / cell
  resume = outputs.load_resume_meta(run_dir) is not None
  if not resume:
    outputs.prepare_out_dir(run_dir, overwrite=True)
  print(
    f"[{name}] {cell}: {seeds} seeds x {run_schedule(config).env_steps} env steps"
    + (" (resumed)" if resume else ""),
    flush=True,
  )
  start = time.time()
  try:
    summary = run(
      config,
      seeds=list(range(seeds)),
      out=run_dir,
      progress=False,
      devices=args.devices or (None if resume else default_devices(algo)),
      resume=resume,
      save_every_s=60 * args.save_every,
      time_limit_s=None if deadline is None else max(0.0, deadline - time.time()),
      memory_check=not args.no_memory_check,
    )
    _report(f"[{name}] {cell}", summary, start)
  except ResumeError as e:
    p.error(f"{e} (remove {run_dir} to start the cell afresh)")
  except MemoryCheckError as e:
    p.error(f"{cell}: {e}")
  except Divergence as e:
    print(f"[{name}] {cell}: stopped: {e}", flush=True)
  (suite_dir / cell).mkdir(parents=True, exist_ok=True)  # even if moved away meanwhile
  for f in _KEEP:
    if (run_dir / f).exists():
      shutil.copy(run_dir / f, suite_dir / cell / f)
  gather(suite_dir)


def _report(prefix: str, summary: dict, start: float) -> None:
  """A cell's outcome: where it paused, or its final evaluation return; its wall time."""
  if summary["status"] == "paused":
    print(
      f"{prefix}: paused at {summary['total_env_steps']} env steps, "
      f"{time.time() - start:.0f}s; the next call continues it",
      flush=True,
    )
  else:
    print(
      f"{prefix}: final eval return {summary['final_eval_return_mean']:.1f}, "
      f"{time.time() - start:.0f}s",
      flush=True,
    )


if __name__ == "__main__":
  sys.exit(main())
