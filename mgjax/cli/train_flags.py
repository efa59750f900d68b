"""The flags of `mgjax train` that are not fields of `mgjax.Config` (those are
`mgjax.run.cli.add_config_flags`'s): their definitions, in the order --help lists them, and
the checks of their values. Imports nothing heavy: --help stays quick, and
`initialize_distributed` runs before JAX's backend starts.
"""

import argparse


def add_flags(p: argparse.ArgumentParser) -> None:
  """Every flag of the command but the Config fields."""
  from mgjax.run import cli, compile_cache

  _add_output_flags(p)
  _add_session_flags(p)
  _add_placement_flags(p)
  cli.add_import_flag(p)
  compile_cache.add_flag(p)
  add_distributed_flags(p)


def _add_output_flags(p) -> None:
  """The seeds, the output folder, and the progress lines."""
  p.add_argument("--seeds", type=int, default=None, help="number of seeds, vmapped (default 1)")
  p.add_argument(
    "--seed",
    type=int,
    default=None,
    help="first seed, with --seeds N: seeds are seed..seed+N-1 (default 0)",
  )
  p.add_argument(
    "--out", type=str, default=None, help="output directory (default runs/ALGO-ENV-TIMESTAMP)"
  )
  p.add_argument("--overwrite", action="store_true", help="reuse a non-empty --out")
  p.add_argument(
    "--no-progress",
    action="store_true",
    help="no progress bar, and no line every 10 s while it sets up and compiles",
  )


def _add_session_flags(p) -> None:
  """Continuing a paused run, pausing, resume points, and TensorBoard's event files."""
  p.add_argument(
    "--resume",
    metavar="DIR",
    default=None,
    help="continue the unfinished run in DIR from its last resume point, with "
    "the config, seeds and sweep it was started with (give no others)",
  )
  p.add_argument(
    "--time-limit",
    type=float,
    default=None,
    metavar="MIN",
    help="pause after the first evaluation chunk that ends past MIN minutes, "
    "saving a resume point (continue with --resume)",
  )
  p.add_argument(
    "--save-every",
    type=float,
    default=10.0,
    metavar="MIN",
    help="minutes between resume points (default 10)",
  )
  p.add_argument(
    "--tensorboard",
    action="store_true",
    help="also write the metrics as TensorBoard event files, DIR/tensorboard/"
    "seed_S/ (a resumed run keeps its first session's choice)",
  )


def _add_placement_flags(p) -> None:
  """The devices the runs are spread over, the sweep, and the memory check."""
  p.add_argument(
    "--devices",
    type=int,
    default=None,
    help="shard the runs over the first N devices; seeds x sweep settings must "
    "be a multiple of N (default: all devices of all processes; a CPU is "
    "split into a device per core, or as many as divide the runs evenly, "
    "except for the SAC family: mbpo, mg-sac and sac stay on one)",
  )
  p.add_argument(
    "--sweep",
    action="append",
    default=[],
    metavar="FIELD=V1,V2,...",
    help="run every combination of these values of sweepable numeric fields as "
    "one vmapped program (repeatable); outputs go to --out/FIELD=V,...",
  )
  p.add_argument(
    "--dry-run",
    action="store_true",
    help="print the memory the runs need, component by component, against "
    "what the host or device has, and stop (nothing compiled or written); exit status 2 "
    "if they do not fit",
  )
  p.add_argument(
    "--no-memory-check",
    action="store_true",
    help="run even where the memory estimate exceeds what is available",
  )


def add_distributed_flags(p: argparse.ArgumentParser) -> None:
  """--distributed and the coordinator's address, the number of processes, this one's index."""
  p.add_argument(
    "--distributed",
    action="store_true",
    help="multi-host: call jax.distributed.initialize first (one process per "
    "host; the coordinator is auto-detected or given by the next flags)",
  )
  p.add_argument("--coordinator-address", default=None, help="HOST:PORT of process 0")
  p.add_argument("--num-processes", type=int, default=None, help="number of processes")
  p.add_argument("--process-id", type=int, default=None, help="this process's index")


def initialize_distributed(argv) -> None:
  """jax.distributed.initialize if --distributed is given, before anything (importing mgjax
  included) starts JAX's backend."""
  from mgjax.run.cli import Parser

  p = Parser(add_help=False)
  add_distributed_flags(p)
  args, _ = p.parse_known_args(argv)
  if args.distributed:
    import jax

    jax.distributed.initialize(
      coordinator_address=args.coordinator_address,
      num_processes=args.num_processes,
      process_id=args.process_id,
    )


def check_flags(p, args) -> None:
  """The parser's error for a --time-limit, --save-every or --seed out of range, or
  --tensorboard without its extra."""
  if args.time_limit is not None and not args.time_limit >= 0:
    p.error(f"time-limit={args.time_limit}: must be non-negative (minutes)")
  if not args.save_every > 0:
    p.error(f"save-every={args.save_every}: must be positive (minutes)")
  _check_seeds(p, args)
  if args.tensorboard:  # before anything is built or written
    from mgjax import extras

    extras.require("tensorboardX", "--tensorboard", p)


def _check_seeds(p, args) -> None:
  """--seed alone (one run, seed S) is taken for a mistyped --seeds: refused, naming both."""
  if args.seed is not None and args.seed < 0:
    p.error(f"seed={args.seed}: must be non-negative")
  if args.seed is not None and args.seeds is None and args.resume is None:
    p.error(
      f"seed={args.seed}: --seed is the first seed of --seeds N; for {args.seed} seeds give "
      f"--seeds {args.seed}, for seed {args.seed} alone --seeds 1 --seed {args.seed}"
    )


def parse_sweep(p, items: list[str]) -> dict[str, list[float]]:
  """The --sweep items as {FIELD: [values]}; the parser's error for one that is not
  FIELD=V1,V2,..."""
  sweep = {}
  for item in items:
    name, sep, text = item.partition("=")
    try:
      values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
      p.error(f"sweep={item!r}: values must be comma-separated numbers")
    if not sep or not values:
      p.error(f"sweep={item!r}: expected FIELD=V1,V2,...")
    sweep[name] = values
  return sweep
