"""Train mg / mle / ppo / mbpo / mg-sac (any algorithm of `mgjax.algorithms.REGISTRY`) on a
Brax (MJX) environment, seeds vmapped.

  mgjax train                      # mg on hopper, CPU-sized defaults
  mgjax train --algo ppo --env halfcheetah --seeds 5 --total-steps 200000

Every field of `mgjax.Config` is a flag (`--mg-horizon 5`, `--similarity inner`, ...).
`--algo mbpo` starts from MBPO's published settings for the env (`mgjax.algorithms.preset`);
flags given override them. `--algo mg-sac` is MBPO with MG model steps on SAC's actor loss
(`--mg-steps`, `--mg-horizon`, `--mle-weight`, `--estimator`, ... as for mg).
`--branch-schedule` (mbpo's model branch length) is also accepted under its earlier name
`--rollout-schedule`.
Writes DIR/config.json, metrics.csv, summary.json and checkpoint/ (docs/design.md,
"Outputs"). Until it finishes, a run saves a resume point every --save-every minutes:

  mgjax train --algo mbpo --out runs/mbpo --time-limit 120   # pauses
  mgjax train --resume runs/mbpo                          # continues

Before anything compiles or is written, the memory the runs need is estimated and held
against what the host (or each accelerator) has: runs that do not fit are refused (exit
status 2); --dry-run prints the estimate and stops. Compiled programs are kept in
~/.cache/mgjax/xla for the next launch (--no-compile-cache; mgjax.run.compile_cache).
A launch says when it compiles (and how long that took last time), prints a line at least
every 10 s until training starts, and ends with the run's folder and the commands that look
at it (mgjax evaluate, mgjax plot).
"""

import argparse
import difflib
import json
import os
import shlex
import sys
import time
import warnings
from pathlib import Path

from mgjax.cli import train_flags

# brax's notice that its own pipelines are unmaintained: we use its MJX backend.
warnings.filterwarnings("ignore", message="Brax System, piplines and environments")
# mgjax's run modules are imported inside the functions: jax.distributed.initialize
# (--distributed) must precede the start of JAX's backend, and --help stays quick.


def build_parser(launcher: str | None = "mgjax") -> argparse.ArgumentParser:
  """The command's flags; `launcher`: as `mgjax.cli.main` (None: experiments/train.py)."""
  from mgjax.cli import command, describe
  from mgjax.run import cli

  prog = None if launcher is None else command("train", launcher)
  p = cli.Parser(prog=prog, description=describe(__doc__, launcher))
  train_flags.add_flags(p)
  return cli.add_config_flags(p)


def main(argv=None, launcher: str | None = None) -> int:
  """The command: `launcher` names it in messages and in the commands it suggests
  (`mgjax.cli.command`; None: experiments/train.py)."""
  argv = sys.argv[1:] if argv is None else list(argv)
  if hasattr(sys.stdout, "reconfigure"):
    sys.stdout.reconfigure(line_buffering=True)  # lines reach a pipe as they are printed
  from mgjax.run.progress import Progress

  # A line every 10 s until the run's own lines start (imports, env, memory estimate).
  setup = Progress(enabled="--no-progress" not in argv)
  setup.phase("starting")
  with setup:
    prepared = _prepare(argv, launcher, setup)
  if isinstance(prepared, int):
    return prepared
  return _train(*prepared, launcher=launcher)


def _prepare(argv, launcher, setup):
  """Everything before training: parsed flags, the config, the device split, the output
  folder, the memory check -> (p, args, config, seeds, sweep, out, estimate, trainer), or an
  exit status."""
  p, args = _parse(argv, launcher)
  config, seeds, sweep, saved_devices = _runs(p, args)
  mesh = _mesh(p, args, config, seeds, sweep, saved_devices)
  out = _out_dir(p, args, config)
  trainer, estimate = _estimate(setup, config, mesh, seeds, sweep)
  stop = _check_memory(p, args, config, estimate)
  if stop is not None:  # --dry-run
    return stop
  import jax

  from mgjax.run import outputs

  try:  # with several processes, process 0 owns the folder
    if jax.process_index() == 0 and args.resume is None:
      out = outputs.prepare_out_dir(out, args.overwrite)
  except outputs.OutputError as e:
    p.error(str(e))
  return p, args, config, seeds, sweep, Path(out), estimate, trainer


def _parse(argv, launcher):
  """The parser and the arguments of `argv`, checked (a bad one exits with the parser's
  error): --distributed's processes joined first, then --import's modules loaded, and the
  compile cache turned on."""
  train_flags.initialize_distributed(argv)
  from mgjax.cli import command
  from mgjax.run import cli

  prog = None if launcher is None else command("train", launcher)
  cli.import_modules(cli.Parser(prog=prog), argv)
  p = build_parser(launcher)
  args = p.parse_args(argv)
  from mgjax.run import compile_cache

  try:  # before the first compile
    compile_cache.enable(not args.no_compile_cache)
  except compile_cache.CacheError as e:
    p.error(str(e))
  train_flags.check_flags(p, args)
  return p, args


def _runs(p, args):
  """(config, seeds, sweep, devices) of the runs: those of the run that --resume continues
  (`_saved_run`), or those the flags give (devices: None)."""
  from mgjax.algorithms import make_config
  from mgjax.config import ConfigError
  from mgjax.run.cli import config_fields

  fields = config_fields(args)
  if args.resume is not None:
    return _saved_run(p, args, fields)
  _check_env(p, fields.get("env"))
  try:
    config = make_config(**fields)
  except ConfigError as e:
    p.error(str(e))
  n, first = (1 if args.seeds is None else args.seeds), (args.seed or 0)
  if n <= 0:
    p.error(f"seeds={n}: must be positive")
  seeds = list(range(first, first + n))
  return config, seeds, train_flags.parse_sweep(p, args.sweep), None


def _saved_run(p, args, fields: dict):
  """(config, seeds, sweep, devices) of the run that --resume continues (devices: those its
  runs were spread over; 1 for points of versions that did not record it, as those were on
  one device of a CPU)."""
  from mgjax.algorithms import config_from_dict
  from mgjax.config import ConfigError
  from mgjax.run import outputs

  given = [f"--{f.replace('_', '-')}" for f in fields]
  given += [
    flag
    for flag, v in (("--seeds", args.seeds), ("--seed", args.seed), ("--out", args.out))
    if v is not None
  ]
  given += ["--sweep"] * bool(args.sweep) + ["--overwrite"] * args.overwrite
  if given:
    p.error(
      f"resume={args.resume!r}: the run continues with its saved settings; drop " + " ".join(given)
    )
  if not Path(args.resume).is_dir():
    what = "not a folder" if Path(args.resume).exists() else "no such folder"
    p.error(f"resume={args.resume!r}: {what} (give the folder of a run that was paused)")
  meta = outputs.load_resume_meta(Path(args.resume))
  if meta is None:
    p.error(
      f"resume={args.resume!r}: no resume point in this folder (a run saves one every "
      "--save-every minutes until it finishes)"
    )
  saved = meta["identity"]
  try:
    # config.json's content: earlier field names and the "resolved" sizes are read too.
    config = config_from_dict(saved["configs"][0])
  except ConfigError as e:
    p.error(f"resume={args.resume!r}: the saved config is not valid in this version: {e}")
  return config, saved["seeds"], saved["sweep"] or None, meta.get("devices", 1)


def _check_env(p, name: str | None) -> None:
  """An env name that neither mgjax nor brax knows: one line with the closest names."""
  if name is None:
    return
  from mgjax import envs
  from mgjax.envs.registry import _brax_names

  if envs.is_known(name):
    return
  names = list(dict.fromkeys([*envs.env_names(), *sorted(_brax_names())]))
  close = difflib.get_close_matches(name, names, n=3)
  hint = f"did you mean {' or '.join(close)}? " if close else ""
  p.error(
    f"env={name!r}: unknown environment; {hint}mgjax's own envs and any brax env name are "
    "accepted (mgjax.envs.ENV_NAMES, brax.envs)"
  )


def _mesh(p, args, config, seeds, sweep, saved_devices):
  """The mesh of the devices the runs are spread over, a CPU first split into devices
  (`saved_devices`: those of the run that --resume continues); the parser's error for a
  sweep or a layout that does not work."""
  from mgjax.config import ConfigError
  from mgjax.run import LayoutError, check_layout, check_sweep, make_mesh, sweep_settings
  from mgjax.run.placement import cpu_devices, split_cpu

  try:
    check_sweep(config, sweep)
    runs = len(seeds) * len(sweep_settings(sweep))
    if not args.distributed:  # on a CPU, a device per core (before JAX starts)
      split_cpu(args.devices or saved_devices or cpu_devices(config.algo, runs))
    mesh = make_mesh(args.devices)
    check_layout(len(seeds), len(sweep_settings(sweep)), mesh)
  except (ConfigError, LayoutError) as e:
    p.error(str(e))
  return mesh


def _out_dir(p, args, config) -> str:
  """The run's folder: --resume's, --out, or runs/ALGO-ENV-TIMESTAMP; the parser's error
  where a new run's folder is in use."""
  import jax

  from mgjax.run import outputs

  out = (
    args.resume
    or args.out
    or os.path.join("runs", f"{config.algo}-{config.env}-{time.strftime('%Y%m%d-%H%M%S')}")
  )
  try:  # a used --out fails fast; it is written only once the memory check has passed
    if jax.process_index() == 0 and args.resume is None and not args.dry_run:
      outputs.check_out_dir(out, args.overwrite)
  except outputs.OutputError as e:
    p.error(str(e))
  return out


def _estimate(setup, config, mesh, seeds, sweep):
  """The memory the runs need, before anything compiles or --out is touched -> (trainer,
  estimate); the trainer is built once: the estimate's and the run's."""
  from mgjax import envs
  from mgjax.algorithms import make_trainer
  from mgjax.run import memory, program_cache, sweep_settings

  setup.phase("building the environment and the trainer")
  trainer = make_trainer(config)
  folder = program_cache.folder_for(config, trainer.algorithm, envs.ENV_NAMES)
  setup.phase("estimating the memory the runs need")
  estimate = memory.estimate(
    trainer, mesh, len(seeds), len(sweep_settings(sweep)), tuple(sweep or ()), folder
  )
  return trainer, estimate


def _check_memory(p, args, config, estimate) -> int | None:
  """The estimate held against what the host or each device has: --dry-run prints it and
  stops (-> 0; exit status 2 where the runs do not fit); otherwise runs that do not fit are
  refused unless --no-memory-check (-> None: training goes on)."""
  from mgjax.run import memory

  fits = memory.fits(estimate)
  if args.dry_run:  # exit status 2 where the runs do not fit
    print(memory.report(estimate, f"{config.algo} on {config.env}"))
    if not fits:
      p.error(memory.refusal(estimate) + " (--no-memory-check runs anyway)")
    return 0
  if not args.no_memory_check and not fits:
    p.error(
      memory.refusal(estimate) + " (--dry-run shows the estimate; --no-memory-check runs anyway)"
    )
  return None


def _train(p, args, config, seeds, sweep, out: Path, estimate, trainer, *, launcher) -> int:
  """The run, and what it prints at its end -> exit status."""
  from mgjax.algorithms import run_schedule
  from mgjax.cli import command

  print(
    f"{config.algo} on {config.env}: {len(seeds)} seed(s), "
    f"{run_schedule(config).env_steps} env steps each -> {out}"
  )
  again = f"{command('train', launcher)} --resume {shlex.quote(str(out))}"
  summary = _run(p, args, config, seeds, sweep, out, estimate, trainer, again)
  if isinstance(summary, int):  # diverged or interrupted
    return summary
  if summary["status"] == "paused":
    print(f"paused at {summary['total_env_steps']} env steps; continue with: {again}")
    return 0
  _report(summary, sweep, out, launcher, trainer)
  return 0


def _run(p, args, config, seeds, sweep, out: Path, estimate, trainer, again: str):
  """`mgjax.run.run` as the flags ask -> its summary, or the exit status where it stops
  early: 1 where training diverged, 130 where it was interrupted (`again`: the command that
  continues it from its last resume point)."""
  from mgjax.extras import MissingExtra
  from mgjax.run import Divergence, MemoryCheckError, ResumeError, outputs, run

  try:
    return run(
      config,
      seeds=seeds,
      out=out,
      progress=not args.no_progress,
      devices=args.devices,
      sweep=sweep,
      resume=args.resume is not None,
      save_every_s=60 * args.save_every,
      time_limit_s=None if args.time_limit is None else 60 * args.time_limit,
      tensorboard=args.tensorboard or None,
      memory_check=not args.no_memory_check,
      memory_estimate=estimate,
      trainer=trainer,
    )
  except (ResumeError, MemoryCheckError, MissingExtra) as e:
    p.error(str(e))
  except Divergence as e:
    print(f"{p.prog}: stopped: {e}", file=sys.stderr)
    return 1
  except KeyboardInterrupt:
    saved = outputs.load_resume_meta(out)
    print(
      f"{p.prog}: interrupted; metrics so far are in {out / 'metrics.csv'}"
      + (f"; continue from iteration {saved['iteration']} with: {again}" if saved else ""),
      file=sys.stderr,
    )
    return 130


def _report(summary: dict, sweep, out: Path, launcher, trainer) -> None:
  """The lines a finished run ends with: each sweep setting's final return, the run's (its
  first setting's) return and speed, and on process 0 its folder and next commands."""
  import jax

  from mgjax.run import setting_name, sweep_settings

  for setting in sweep_settings(sweep) if sweep else []:
    name = setting_name(setting)
    mean = json.loads((out / name / "summary.json").read_text())["final_eval_return_mean"]
    print(f"{name}: final eval return {mean:.1f} (mean over seeds)")
  print(
    f"final eval return {summary['final_eval_return_mean']:.1f} (mean over seeds"
    f"{' of the first setting' if sweep else ''}); "
    f"{summary['env_steps_per_s']:.0f} env steps/s; compile {summary['compile_time_s']:.0f}s;"
    f" wall {summary['wall_time_s']:.0f}s"
  )
  if jax.process_index() == 0:
    first = setting_name(sweep_settings(sweep)[0]) if sweep else None
    print("\n" + next_commands(out, launcher, _renders(trainer), first))


def next_commands(out: Path, launcher: str | None, renders: bool, first: str | None = None) -> str:
  """The lines a finished run ends with: its folder, and the commands that look at it
  (evaluate; a video and the 3D viewer where the env has a MuJoCo model to render; plot),
  with the folder's path as given. `first`: the folder of a sweep's first setting, which
  evaluate takes."""
  from mgjax.cli import command

  where = shlex.quote(str(Path(out) / first if first else out))
  folder = shlex.quote(str(out))
  rows = [(f"{command('evaluate', launcher)} {where}", "the saved policy's return, 10 episodes")]
  if renders:
    video = shlex.quote(str(Path(out) / "episode.mp4"))
    page = shlex.quote(str(Path(out) / "episode.html"))
    rows += [
      (f"{command('evaluate', launcher)} {where} --video {video}", "a video of one episode"),
      (f"{command('evaluate', launcher)} {where} --html {page}", "the 3D viewer, offline"),
    ]
  rows.append((f"{command('plot', launcher)} {folder}", "learning curves, into the folder"))
  width = max(len(c) for c, _ in rows)
  lines = [f"run folder: {out}", "next:"]
  lines += [f"  {c:<{width}}  # {about}" for c, about in rows]
  if not renders:
    lines.append("  (this env has no MuJoCo model: no video or 3D viewer)")
  return "\n".join(lines)


def _renders(trainer) -> bool:
  """Whether the env of `trainer` has a MuJoCo model to render."""
  env = getattr(getattr(trainer.setup, "env", None), "env", None)
  return getattr(getattr(env, "sys", None), "mj_model", None) is not None
