"""Does a model objective raise the real alignment it optimises? (`lab.probe`)

  python experiments/alignment_probe.py --env hopper --at 6,9 --train-seeds 0,1 \
      --heldout-sets 2 --snapshots '~/mgjax-runs/probe/hopper-seed{seed}' \
      --out results/alignment-disjoint/hopper.json

For each training seed in --train-seeds, trains one run of --algo (default mle) and saves a
snapshot (a resume point) after each number of evaluation chunks in --at under
--snapshots/chunks=N ("{seed}" in --snapshots is replaced by the seed; it must be there
with several seeds), or reuses the snapshots already there (a missing one is trained on
from the latest one below it); `--from RUN_DIR` measures the resume point of a `train.py`
run instead. At each snapshot and for each held-out set j < --heldout-sets (set j: the fit
and held-out batches collected with the probe key fold_in(key(seed + 1000), j); set 0 with
key(seed + 1000) itself, as before), every objective (--objectives; default all of
`lab.probe.DEFAULT_OBJECTIVES`) is fitted from the snapshot's model with
--fit-keys keys and measured on held-out real batches, the target ḡ_R from one half of them
and ĝ_M's start states from the other (--overlap: both from all of them, as the earlier
probe did): pooled and single-batch alignment and held-out NLL, and each MG objective's
paired difference to NLL only. With one seed and one set the CIs are over fit keys; with
more, the point gives per-(seed, set) values and two CIs over all of them
(`lab.probe_cells`: a hierarchical bootstrap over seeds, then sets, then keys,
and a Student-t interval over the (seed, set) means). The JSON (a list, one entry per --at,
rewritten after each) goes to --out and the figure beside it (.png); --cells DIR keeps each
cell's result there, so that a later command with more seeds or sets reuses it.

With --algo mbpo or mg-sac (or --from such a run) the probe is MBPO's loop's
(`lab.sac_probe`; one seed and one set): the snapshot's real buffer is split
into a fit and a held-out half, --objectives name `sac_probe.SAC_OBJECTIVES`, and
--fit-batches chunks of fit states give the floor's fit targets (--heldout-batches is not
used: every held-out state is).

  python experiments/alignment_probe.py --from ~/mgjax-runs/bench/cpu-sac/mbpo-hopper \
      --out results/alignment/mbpo-hopper.json
"""

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import jax
from lab import probe, probe_cells, sac_probe

from mgjax import extras
from mgjax.algorithms import make_config
from mgjax.config import ConfigError
from mgjax.run import compile_cache
from mgjax.run.cli import parse_set


def _error(field: str, value, why: str) -> int:
  print(f"error: {field}={value!r}: {why}", file=sys.stderr)
  return 2


class _Invalid(Exception):
  """Bad input: the message after "error: " (main prints it and exits with status 2)."""


def _invalid(field: str, value, why: str) -> _Invalid:
  return _Invalid(f"{field}={value!r}: {why}")


def _parser() -> argparse.ArgumentParser:
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
    help="comma-separated names of lab.probe.DEFAULT_OBJECTIVES or "
    "EXTRA_OBJECTIVES, or all (the default ones)",
  )
  _add_sampling_flags(p)
  p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE")
  p.add_argument("--out", required=True, help="JSON file to write")
  p.add_argument(
    "--table",
    action="store_true",
    help="measure nothing: print --out's table (Markdown) and redraw its figure",
  )
  return p


def _add_sampling_flags(p: argparse.ArgumentParser) -> None:
  """The probe's sizes, and the training seeds and held-out sets its cells span."""
  p.add_argument("--fit-keys", type=int, default=6)
  p.add_argument("--fit-batches", type=int, default=16)
  p.add_argument("--heldout-batches", type=int, default=32)
  p.add_argument("--draws", type=int, default=32)
  p.add_argument("--seed", type=int, default=None, help="one training seed (--train-seeds S)")
  p.add_argument("--train-seeds", default=None, help="comma-separated training seeds (default 0)")
  p.add_argument(
    "--heldout-sets", type=int, default=1, help="collections of fit and held-out batches"
  )
  p.add_argument(
    "--only-sets",
    default=None,
    metavar="J[,J]",
    help="run only these held-out sets (e.g. one per process, with --cells)",
  )
  p.add_argument(
    "--cells",
    default=None,
    metavar="DIR",
    help="keep each (seed, set) cell's result in DIR and reuse the ones already there",
  )
  p.add_argument(
    "--overlap",
    action="store_true",
    help="the earlier probe: ĝ_M's start states from the batches that give the target",
  )


def main(argv=None) -> int:
  p = _parser()
  args = p.parse_args(argv)
  extras.require("matplotlib", "the probe's figure", p)
  if args.table:
    return _table(args.out)
  try:
    seeds = _check_counts(args)
    algo, config = _algo_and_config(args)
    sac_family = algo in ("mbpo", "mg-sac")
    if sac_family and (len(seeds) > 1 or args.heldout_sets > 1):
      raise _invalid("algo", algo, "MBPO's probe takes one training seed and one held-out set")
    objectives, settings = _objectives_and_settings(args, sac_family)
  except _Invalid as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  compile_cache.enable()  # a later command with the same config loads the programs
  if args.from_run:
    points = [(None, {seeds[0]: Path(args.from_run)})]
  else:
    points = _make_snapshots(config, args, seeds)
  return _probe_all(points, args, objectives, settings, sac_family)


def _table(out: str) -> int:
  """--table: --out's table printed and its figure redrawn."""
  try:
    points = json.loads(Path(out).read_text())
  except (OSError, ValueError) as e:
    return _error("out", out, f"unreadable ({e})")
  probe.plot_probe(points, Path(out).with_suffix(".png"))
  print(probe.probe_table(points))
  return 0


def _check_counts(args) -> list[int]:
  """Parses --at and --only-sets in place and checks the counts; the training seeds.
  Raises _Invalid."""
  try:
    args.at = sorted({int(x) for x in args.at.split(",")})
  except ValueError:
    raise _invalid("at", args.at, "expected positive chunk counts, e.g. 3,6,9") from None
  if not args.at or args.at[0] < 1:
    raise _invalid("at", args.at, "expected positive chunk counts, e.g. 3,6,9")
  seeds = _seeds(args)
  if seeds is None:
    raise _invalid("train-seeds", args.train_seeds, "expected distinct seeds, e.g. 0,1")
  for field in ("fit_keys", "fit_batches", "heldout_batches", "draws"):
    if getattr(args, field) < 2:
      raise _invalid(field.replace("_", "-"), getattr(args, field), "needs at least 2")
  if args.heldout_sets < 1:
    raise _invalid("heldout-sets", args.heldout_sets, "needs at least 1")
  if args.only_sets is not None:
    try:
      args.only_sets = sorted({int(x) for x in args.only_sets.split(",")})
    except ValueError:
      args.only_sets = [-1]
    if not all(0 <= j < args.heldout_sets for j in args.only_sets):
      raise _invalid("only-sets", args.only_sets, "expected sets below --heldout-sets")
  if len(seeds) > 1 and (args.from_run or "{seed}" not in args.snapshots):
    why = "several seeds need '{seed}' in --snapshots (and no --from)"
    raise _invalid("train-seeds", args.train_seeds, why)
  return seeds


def _algo_and_config(args):
  """(algo, config): --from's snapshot's algorithm (config None), else --algo's config
  with --set. Raises _Invalid."""
  try:
    if args.from_run:
      meta = probe.load_snapshot_meta(Path(args.from_run))
      if meta is None:
        raise ValueError(f"snapshot={args.from_run!r}: no resume point in this folder")
      return meta["identity"]["configs"][0]["algo"], None
    config = make_config(algo=args.algo, env=args.env, **parse_set(args.set))
    return config.algo, config
  except (ConfigError, ValueError) as e:
    raise _Invalid(str(e)) from None


def _objectives_and_settings(args, sac_family: bool):
  """The objectives --objectives names and the probe's settings. Raises _Invalid."""
  if sac_family:
    defaults, extra = sac_probe.SAC_OBJECTIVES, ()
    settings = sac_probe.SACProbeSettings(args.draws, args.fit_keys, args.fit_batches)
  else:
    defaults, extra = probe.DEFAULT_OBJECTIVES, probe.EXTRA_OBJECTIVES
    settings = probe.ProbeSettings(
      args.fit_batches, args.heldout_batches, args.draws, args.fit_keys, not args.overlap
    )
  known = {o.name: o for o in defaults + extra}
  names = [o.name for o in defaults] if args.objectives == "all" else args.objectives.split(",")
  for name in names:
    if name not in known:
      raise _invalid("objectives", name, f"unknown; choose from {', '.join(known)}")
  objectives = [known[n] for n in names]
  if not any(not o.mg for o in objectives):
    raise _invalid("objectives", args.objectives, "needs an NLL-only arm to compare with")
  if not sac_family and max(o.target_batches for o in objectives) > settings.fit_batches:
    raise _invalid("fit-batches", settings.fit_batches, "fewer than an objective's target")
  return objectives, settings


def _seeds(args) -> list[int] | None:
  """The training seeds: --train-seeds, else --seed, else [0]; None if malformed."""
  if args.train_seeds is None:
    return [0 if args.seed is None else args.seed]
  try:
    seeds = [int(x) for x in args.train_seeds.split(",")]
  except ValueError:
    return None
  return seeds if seeds and len(set(seeds)) == len(seeds) else None


def _make_snapshots(config, args, seeds) -> list[tuple[int, dict[int, Path]]]:
  """(chunks, {seed: snapshot folder}) for each --at, training what is missing."""
  by_seed = {
    s: probe.make_snapshots(
      config,
      args.snapshots.replace("{seed}", str(s)),
      args.at,
      s,
      log=lambda line: print(line, flush=True),
    )
    for s in seeds
  }
  return [(n, {s: dict(by_seed[s])[n] for s in seeds}) for n in args.at]


def _saved_cell(args, folder, seed, heldout_set, settings, objectives) -> Path | None:
  """--cells DIR: where one cell's result is kept, named by everything that makes it."""
  if not args.cells:
    return None
  what = {
    "snapshot": str(Path(folder).expanduser().resolve()),
    "run_index": args.run_index,
    "seed": seed,
    "set": heldout_set,
    "settings": settings.__dict__,
    "objectives": [o._asdict() for o in objectives],
  }
  digest = hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:16]
  return Path(args.cells).expanduser() / f"seed{seed}-set{heldout_set}-{digest}.json"


def _cell_key(seed: int, heldout_set: int) -> jax.Array:
  key = jax.random.key(seed + 1000)
  return key if heldout_set == 0 else jax.random.fold_in(key, heldout_set)


def _probe_one(chunks, folders, args, objectives, settings, sac_family, progs):
  """Every (seed, set) cell at one snapshot location -> (the JSON point, blown-up names)."""
  cells, bad, t0 = [], [], time.time()
  for seed, folder in folders.items():
    config, trainer, state = probe.load_snapshot(folder, args.run_index)
    meta = probe.load_snapshot_meta(folder)
    if not sac_family and progs.get("config", config) != config:
      raise ValueError(f"snapshot={str(folder)!r}: another config than the other seeds'")
    if not sac_family and "programs" not in progs:
      progs.update(
        config=config, programs=probe.programs(trainer.setup, settings, config.mg_max_grad_norm)
      )
    for j in args.only_sets or range(args.heldout_sets):
      print(f"== {folder} ({int(state.env_steps)} env steps), held-out set {j}", flush=True)
      saved, t1 = _saved_cell(args, folder, seed, j, settings, objectives), time.time()
      if saved is not None and saved.exists():
        result = json.loads(saved.read_text())
        print(f"(from {saved})", flush=True)
      else:
        extra = {} if sac_family else {"progs": progs["programs"]}
        run_probe = sac_probe.run_probe if sac_family else probe.run_probe
        result = run_probe(
          trainer.setup,
          state,
          objectives,
          _cell_key(seed, j),
          settings,
          config.mg_max_grad_norm,
          **extra,
        )
        result["elapsed_s"] = round(time.time() - t1, 1)
        if saved is not None:
          saved.parent.mkdir(parents=True, exist_ok=True)
          saved.write_text(json.dumps(result) + "\n")
      bad += [f"{n} (seed {seed}, set {j})" for n in probe.check_finite(result)]
      cells.append(
        {
          "seed": seed,
          "set": j,
          "snapshot": str(folder),
          "env_steps": int(state.env_steps),
          "eval_return": meta.get("eval_return"),
          "result": result,
        }
      )
  return _point(chunks, folders, config, cells, args, settings, sac_family, t0), bad


def _point(chunks, folders, config, cells, args, settings, sac_family, t0) -> dict:
  """The JSON point of one snapshot location: its cells' results merged (one cell's as it
  is), with what identifies the location, the probe and the config."""
  merged = cells[0]["result"] if len(cells) == 1 else probe_cells.aggregate(cells)
  return {
    "env": config.env,
    "algo": config.algo,
    "chunks": chunks,
    "env_steps": cells[0]["env_steps"],
    "snapshot": cells[0]["snapshot"],
    "eval_return": cells[0]["eval_return"],
    "probe": "sac" if sac_family else "ppo",
    "probe_settings": settings.__dict__,
    "seed": cells[0]["seed"],
    "train_seeds": sorted(folders),
    "heldout_sets": args.heldout_sets,
    "mg_rollouts": config.mg_rollouts,
    "mg_horizon": config.mg_horizon,
    "batch_steps": config.batch_steps,
    **merged,
    "elapsed_s": round(time.time() - t0, 1),
  }


def _probe_all(points, args, objectives, settings, sac_family) -> int:
  out, results, progs = Path(args.out), [], {}
  out.parent.mkdir(parents=True, exist_ok=True)
  for chunks, folders in points:
    try:
      point, bad = _probe_one(chunks, folders, args, objectives, settings, sac_family, progs)
    except ValueError as e:
      print(f"error: {e}", file=sys.stderr)
      return 2
    results.append(point)
    out.write_text(json.dumps(results, indent=1) + "\n")
    probe.plot_probe(results, out.with_suffix(".png"))
    if bad:
      print(f"error: objectives {bad} blew up at {list(folders.values())}", file=sys.stderr)
      return 1
  print(out)
  return 0


if __name__ == "__main__":
  sys.exit(main())
