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
import argparse
import dataclasses
import json
import shutil
import sys
import time
import warnings
from pathlib import Path

warnings.filterwarnings("ignore", message="Brax System, piplines and environments")

from mgjax.algorithms import make_config, run_schedule  # noqa: E402
from mgjax.config import Config, ConfigError  # noqa: E402
from mgjax.run import compile_cache  # noqa: E402
from mgjax.run.cli import parse_set  # noqa: E402


@dataclasses.dataclass(frozen=True)
class Suite:
  envs: tuple[str, ...]
  algos: tuple[str, ...]
  seeds: int
  total_steps: int
  overrides: tuple[tuple[str, object], ...] = ()  # Config fields shared by every cell
  algo_overrides: tuple[tuple[str, tuple[tuple[str, object], ...]], ...] = ()  # per algo

  def config(self, algo: str, env: str, extra: dict) -> Config:
    """The algorithm's preset, then the suite's overrides, then --set fields."""
    own = dict(dict(self.algo_overrides).get(algo, ()))
    return make_config(**{**dict(self.overrides), **own, "algo": algo, "env": env,
                          "total_steps": self.total_steps, **extra})


# Evaluations every 5 iterations of 1024 steps (5120 env steps) so that the 25k/50k/100k
# milestones of the results table fall within half a chunk of an evaluation.
_EVAL = (("eval_every", 5),)
# mbpo keeps its own iteration of 250 env steps (MBPO's model round); evaluations every 5
# of them, after the 5000 exploration steps, also land on the milestones.
_SMOKE_SAC_LOOP = (("num_envs", 1), ("rollout_length", 128), ("eval_every", 4),
                   ("exploration_steps", 1024), ("sac_hidden", (32, 32)), ("sac_batch", 64),
                   ("updates_per_step", 1))
_SMOKE_SAC = _SMOKE_SAC_LOOP + (
    ("ensemble_size", 3), ("elites", 2), ("rollout_batch", 64), ("model_max_epochs", 2),
    ("model_epoch_steps", 5), ("branch_schedule", (0, 2, 1, 3)))
# The SAC family's CPU configuration (RESULTS.md, "The SAC family on a CPU"): MBPO's
# published settings but for the three stages that cost most on a CPU, each cut where the
# roofline measured it: 5 instead of 20 SAC updates per env step, a model round of exactly
# 100 warm-started ensemble steps (2 epochs of 50) instead of early stopping over the whole
# buffer, and rollouts stepped by their drawn elite only.
_CPU_SAC = (("updates_per_step", 5), ("model_fit_budget", 100), ("model_epoch_steps", 50),
            ("elite_draw", "block"))
# mg-sac (MBPO with MG model steps) is not in the cpu and gpu suites: a cell costs what an
# mbpo cell does. Run it with --algo mg-sac.
SUITES = {
    "cpu": Suite(("hopper", "walker2d", "halfcheetah", "ant"),
                 ("mg", "mle", "ppo", "mbpo", "sac"), 5, 100_000, _EVAL),
    "gpu": Suite(("hopper", "walker2d", "halfcheetah", "ant", "humanoid"),
                 ("mg", "mle", "ppo", "mbpo", "sac"), 10, 300_000, _EVAL),
    "smoke": Suite(("pointmass",), ("mg", "mle", "ppo", "mbpo", "mg-sac", "sac"), 2, 5120, (
        ("num_envs", 16), ("rollout_length", 32), ("eval_every", 5), ("num_eval_envs", 4),
        ("model_hidden", (32, 32)), ("mle_steps", 5), ("mg_steps", 1), ("mg_rollouts", 32),
        ("model_rollouts", 64), ("model_updates", 1)), algo_overrides=(
        ("mbpo", _SMOKE_SAC), ("mg-sac", _SMOKE_SAC + (("mg_horizon", 3),)),
        ("sac", _SMOKE_SAC_LOOP))),
    "cpu-sac": Suite(("hopper", "walker2d", "halfcheetah", "ant"), ("mbpo", "mg-sac"), 5,
                     40_000, _EVAL, algo_overrides=(("mbpo", _CPU_SAC), ("mg-sac", _CPU_SAC))),
}
_KEEP = ("metrics.csv", "summary.json", "config.json")
SAC_ALGOS = ("mbpo", "mg-sac", "sac")  # SAC's loop: G updates per env step


class _Parser(argparse.ArgumentParser):
  def error(self, message):
    self.exit(2, f"{self.prog}: error: {message}\n")


def _finished(cell_dir: Path) -> bool:
  try:
    return json.loads((cell_dir / "summary.json").read_text())["status"] in ("finished",
                                                                             "diverged")
  except (OSError, ValueError, KeyError):
    return False


def gather(suite_dir: Path) -> Path:
  """Concatenates every cell's metrics.csv into SUITE/metrics.csv (columns of earlier
  versions under their current names); returns its path."""
  from mgjax.run import outputs
  out = suite_dir / "metrics.csv"
  outputs.concat_metrics(((p, {}) for p in sorted(suite_dir.glob("*/metrics.csv"))), out)
  return out


def main(argv=None) -> int:
  p = _Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--suite", default="cpu", help=f"one of {', '.join(SUITES)}")
  p.add_argument("--results", default="results", help="where the small per-cell files go")
  p.add_argument("--runs", default="runs/bench", help="where full run folders go")
  p.add_argument("--env", action="append", help="only these envs (repeatable)")
  p.add_argument("--algo", action="append", help="only these algorithms (repeatable)")
  p.add_argument("--seeds", type=int, default=None, help="override the suite's seed count")
  p.add_argument("--tag", default="", help="suffix of the suite folder (for ablations)")
  p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                 help="override a Config field in every cell")
  p.add_argument("--devices", type=int, default=None,
                 help="shard each cell's seeds over the first N devices (default all; a CPU "
                      "is split into a device per core, or as many as divide the seeds evenly, "
                      "and the SAC family's cells take its first device)")
  p.add_argument("--time-limit", type=float, default=None, metavar="MIN",
                 help="pause (resumably) after the first evaluation chunk past MIN minutes; "
                      "later cells are not started (the first one always is)")
  p.add_argument("--save-every", type=float, default=10.0, metavar="MIN",
                 help="minutes between a cell's resume points (default 10)")
  p.add_argument("--no-memory-check", action="store_true",
                 help="run a cell even where its memory estimate exceeds what is available")
  compile_cache.add_flag(p)
  args = p.parse_args(argv)
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
  envs = tuple(args.env or suite.envs)
  algos = tuple(args.algo or suite.algos)
  seeds = args.seeds if args.seeds is not None else suite.seeds
  if seeds <= 0:
    p.error(f"seeds={seeds}: must be positive")
  try:
    extra = parse_set(args.set)
    cells = [(a, e, suite.config(a, e, extra)) for e in envs for a in algos]
    # mbpo's and mg-sac's cells (SAC's loop) cost hundreds of times more per env step
    # (RESULTS.md): run them last.
    cells.sort(key=lambda cell: cell[0] in SAC_ALGOS)
  except ConfigError as e:
    p.error(str(e))

  from mgjax.run import (Divergence, LayoutError, MemoryCheckError, ResumeError, check_layout,
                         make_mesh, outputs, run)
  from mgjax.run.placement import cpu_devices, default_devices, split_cpu
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
    run_dir = Path(args.runs) / name / cell
    resume = outputs.load_resume_meta(run_dir) is not None
    if not resume:
      outputs.prepare_out_dir(run_dir, overwrite=True)
    print(f"[{name}] {cell}: {seeds} seeds x {run_schedule(config).env_steps} env steps"
          + (" (resumed)" if resume else ""), flush=True)
    start = time.time()
    try:
      summary = run(
          config, seeds=list(range(seeds)), out=run_dir, progress=False,
          devices=args.devices or (None if resume else default_devices(algo)),
          resume=resume, save_every_s=60 * args.save_every,
          time_limit_s=None if deadline is None else max(0.0, deadline - time.time()),
          memory_check=not args.no_memory_check)
      if summary["status"] == "paused":
        print(f"[{name}] {cell}: paused at {summary['total_env_steps']} env steps, "
              f"{time.time() - start:.0f}s; the next call continues it", flush=True)
      else:
        print(f"[{name}] {cell}: final eval return {summary['final_eval_return_mean']:.1f}, "
              f"{time.time() - start:.0f}s", flush=True)
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
  print(f"[{name}] results in {gather(suite_dir)}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
