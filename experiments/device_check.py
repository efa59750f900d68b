"""A prepared check of an accelerator in under 8 minutes (`lab.device_check`): the
platform, its devices and memory, the matmul precision (set explicitly, "highest" by
default); every algorithm of the registry compiled and run for a few iterations on hopper
with finite metrics; and timings comparable with the CPU figures of RESULTS.md: `mg` with
5 seeds × 100k hopper steps (wall time), `mbpo` at MBPO's published settings and `sac` in
seconds per 1000 env steps with 5 seeds vmapped, and the compile times.

  python experiments/device_check.py                      # -> results/gpu/device_check.json
  python experiments/device_check.py --cpu --out /tmp/device_check.json   # a rehearsal on a CPU

Each part has its own time limit (on an accelerator it runs in a process of its own, killed
at its limit); a part that fails or runs out of time is recorded and the others still run.
Exit status 0 if every algorithm ran with finite metrics, 1 otherwise, 2 on bad input or
without an accelerator (without --cpu).
"""

import argparse
import sys
import warnings
from pathlib import Path

warnings.filterwarnings("ignore", message="Brax System, piplines and environments")


def _parser():
  from lab import device_check

  from mgjax.run import compile_cache
  from mgjax.run.cli import Parser

  p = Parser(description=__doc__)
  p.add_argument(
    "--cpu",
    action="store_true",
    help="the same parts on pointmass, 2 seeds, at the smoke suite's sizes (the iteration "
    "timings at tiny sizes), on the CPU (a rehearsal)",
  )
  p.add_argument(
    "--out",
    default=None,
    help="where the record goes (default results/gpu/device_check.json; with "
    "--cpu results/gpu/device_check-cpu.json)",
  )
  p.add_argument(
    "--precision",
    default="highest",
    choices=device_check.PRECISIONS,
    help="jax_default_matmul_precision for every part (default highest)",
  )
  p.add_argument(
    "--budget",
    type=float,
    default=470.0,
    metavar="S",
    help="seconds for all parts together (default 470)",
  )
  p.add_argument(
    "--only",
    action="append",
    default=[],
    choices=device_check.PARTS,
    help="run only this part (repeatable)",
  )
  p.add_argument(
    "--limit",
    action="append",
    default=[],
    metavar="PART=S",
    help="this part's time limit in seconds (repeatable; default: platform 30, "
    "mg 130, mbpo 100, sac 50, smoke 110)",
  )
  p.add_argument(
    "--isolate",
    action=argparse.BooleanOptionalAction,
    default=None,
    help="run each part in a process of its own, killed at its limit "
    "(default: on an accelerator, not with --cpu)",
  )
  compile_cache.add_flag(p)
  return p


def _limits(p, items: list[str]) -> dict[str, float]:
  """The --limit PART=SECONDS items as {part: seconds}; p.error on a bad one."""
  from lab import device_check

  limits = {}
  for item in items:
    name, _, text = item.partition("=")
    try:
      limits[name] = float(text)
    except ValueError:
      p.error(f"limit={item!r}: expected PART=SECONDS")
    if name not in device_check.PARTS or not limits[name] > 0:
      p.error(f"limit={item!r}: PART is one of {', '.join(device_check.PARTS)}, SECONDS > 0")
  return limits


def main(argv=None) -> int:
  from lab import device_check

  from mgjax.run import compile_cache

  p = _parser()
  args = p.parse_args(argv)
  if not args.budget > 0:
    p.error(f"budget={args.budget}: must be positive (seconds)")
  limits = _limits(p, args.limit)
  out = Path(
    args.out
    or ("results/gpu/device_check-cpu.json" if args.cpu else "results/gpu/device_check.json")
  )
  try:
    record = device_check.check(
      out,
      cpu=args.cpu,
      precision=args.precision,
      budget_s=args.budget,
      isolate=args.isolate,
      compile_cache=not args.no_compile_cache,
      only=tuple(args.only),
      limits=limits,
    )
  except (compile_cache.CacheError, OSError) as e:
    p.error(str(e).splitlines()[0])
  if "error" in record:
    print(f"device_check.py: error: {record['error']}", file=sys.stderr)
    return 2
  print(f"wrote {out} ({record['elapsed_s']:.0f}s)")
  for algo, outcome in record["algorithms"].items():
    print(f"  {algo}: {outcome}")
  return 0 if all(v == "ok" for v in record["algorithms"].values()) else 1


if __name__ == "__main__":
  sys.exit(main())
