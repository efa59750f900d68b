"""Does a model objective raise the real alignment it optimises? (`mgjax.analysis.probe`)

  python experiments/alignment_probe.py --env hopper --at 3,6,9 \
      --snapshots ~/mgjax-runs/probe/hopper --out results/alignment/hopper.json

Trains one seed of --algo (default mle) and saves a snapshot (a resume point) after each
number of evaluation chunks in --at under --snapshots/chunks=N, or reuses the snapshots
already there (a missing one is trained on from the latest one below it); `--from RUN_DIR`
measures the resume point of a `train.py` run instead. At each snapshot, every objective
(--objectives; default all of `mgjax.analysis.probe.DEFAULT_OBJECTIVES`)
is fitted from the snapshot's model with --fit-keys keys and measured on held-out real
batches: pooled and single-batch alignment and held-out NLL, mean and 95% CI over keys, and
each MG objective's paired difference to NLL only. The JSON (a list, one entry per
snapshot, rewritten after each) goes to --out and the figure beside it (.png).

With --algo mbpo or mg-sac (or --from such a run) the probe is MBPO's loop's
(`mgjax.analysis.sac_probe`): the snapshot's real buffer is split into a fit and a held-out
half, --objectives name `sac_probe.SAC_OBJECTIVES`, and --fit-batches chunks of fit states
give the floor's fit targets (--heldout-batches is not used: every held-out state is).

  python experiments/alignment_probe.py --from ~/mgjax-runs/bench/cpu-sac/mbpo-hopper \
      --out results/alignment/mbpo-hopper.json
"""

import argparse
import json
import sys
import time
from pathlib import Path

import jax

from mgjax.algorithms import make_config
from mgjax.analysis import probe, sac_probe
from mgjax.config import ConfigError
from mgjax.run.cli import parse_set


def _error(field: str, value, why: str) -> int:
  print(f"error: {field}={value!r}: {why}", file=sys.stderr)
  return 2


def main(argv=None) -> int:
  p = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  p.add_argument("--env", default="hopper")
  p.add_argument("--algo", default="mle", choices=("mg", "mle", "mbpo", "mg-sac"))
  p.add_argument("--at", default="3,6,9", help="snapshots after these evaluation chunks")
  p.add_argument(
    "--snapshots",
    default="~/mgjax-runs/probe/hopper",
    help="folder of the snapshots (reused when present)",
  )
  p.add_argument(
    "--from",
    dest="from_run",
    default=None,
    metavar="RUN_DIR",
    help="measure this run's resume point instead of training",
  )
  p.add_argument("--run-index", type=int, default=0, help="which run of --from's point")
  p.add_argument(
    "--objectives",
    default="all",
    help="comma-separated names of mgjax.analysis.probe.DEFAULT_OBJECTIVES or "
    "EXTRA_OBJECTIVES, or all (the default ones)",
  )
  p.add_argument("--fit-keys", type=int, default=6)
  p.add_argument("--fit-batches", type=int, default=16)
  p.add_argument("--heldout-batches", type=int, default=32)
  p.add_argument("--draws", type=int, default=32)
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE")
  p.add_argument("--out", required=True, help="JSON file to write")
  p.add_argument(
    "--table",
    action="store_true",
    help="measure nothing: print --out's table (Markdown) and redraw its figure",
  )
  args = p.parse_args(argv)
  if args.table:
    try:
      points = json.loads(Path(args.out).read_text())
    except (OSError, ValueError) as e:
      return _error("out", args.out, f"unreadable ({e})")
    probe.plot_probe(points, Path(args.out).with_suffix(".png"))
    print(probe.probe_table(points))
    return 0

  try:
    args.at = sorted({int(x) for x in args.at.split(",")})
  except ValueError:
    return _error("at", args.at, "expected positive chunk counts, e.g. 3,6,9")
  if not args.at or args.at[0] < 1:
    return _error("at", args.at, "expected positive chunk counts, e.g. 3,6,9")
  for field in ("fit_keys", "fit_batches", "heldout_batches", "draws"):
    if getattr(args, field) < 2:
      return _error(field.replace("_", "-"), getattr(args, field), "needs at least 2")
  try:
    if args.from_run:
      meta = probe.load_snapshot_meta(Path(args.from_run))
      if meta is None:
        raise ValueError(f"snapshot={args.from_run!r}: no resume point in this folder")
      algo = meta["identity"]["configs"][0]["algo"]
      points = [(None, Path(args.from_run))]
    else:
      config = make_config(algo=args.algo, env=args.env, **parse_set(args.set))
      algo, points = config.algo, None
  except (ConfigError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  sac_family = algo in ("mbpo", "mg-sac")
  if sac_family:
    defaults, extra = sac_probe.SAC_OBJECTIVES, ()
    settings = sac_probe.SACProbeSettings(args.draws, args.fit_keys, args.fit_batches)
    run_probe = sac_probe.run_probe
  else:
    defaults, extra = probe.DEFAULT_OBJECTIVES, probe.EXTRA_OBJECTIVES
    settings = probe.ProbeSettings(
      args.fit_batches, args.heldout_batches, args.draws, args.fit_keys
    )
    run_probe = probe.run_probe
  known = {o.name: o for o in defaults + extra}
  names = [o.name for o in defaults] if args.objectives == "all" else args.objectives.split(",")
  for name in names:
    if name not in known:
      return _error("objectives", name, f"unknown; choose from {', '.join(known)}")
  objectives = [known[n] for n in names]
  if not any(not o.mg for o in objectives):
    return _error("objectives", args.objectives, "needs an NLL-only arm to compare with")
  if not sac_family and max(o.target_batches for o in objectives) > settings.fit_batches:
    return _error("fit-batches", settings.fit_batches, "fewer than an objective's target")
  if points is None:
    points = probe.make_snapshots(
      config, args.snapshots, args.at, args.seed, log=lambda line: print(line, flush=True)
    )

  out, results = Path(args.out), []
  out.parent.mkdir(parents=True, exist_ok=True)
  for chunks, folder in points:
    t0 = time.time()
    config, trainer, state = probe.load_snapshot(folder, args.run_index)
    meta = probe.load_snapshot_meta(folder)
    print(f"== {folder} ({int(state.env_steps)} env steps)", flush=True)
    result = run_probe(
      trainer.setup,
      state,
      objectives,
      jax.random.key(args.seed + 1000),
      settings,
      config.mg_max_grad_norm,
    )
    bad = probe.check_finite(result)
    if bad:
      print(
        f"error: objectives {bad} blew up at {folder} (fit keys of seed {args.seed})",
        file=sys.stderr,
      )
    results.append(
      {
        "env": config.env,
        "algo": config.algo,
        "chunks": chunks,
        "env_steps": int(state.env_steps),
        "snapshot": str(folder),
        "eval_return": meta.get("eval_return"),
        "probe": "sac" if sac_family else "ppo",
        "probe_settings": settings.__dict__,
        "seed": args.seed,
        "mg_rollouts": config.mg_rollouts,
        "mg_horizon": config.mg_horizon,
        "batch_steps": config.batch_steps,
        **result,
        "elapsed_s": round(time.time() - t0, 1),
      }
    )
    out.write_text(json.dumps(results, indent=1) + "\n")
    probe.plot_probe(results, out.with_suffix(".png"))
    if bad:
      return 1
  print(out)
  return 0


if __name__ == "__main__":
  sys.exit(main())
