"""Runs a config for several vmapped seeds (and sweep settings) and writes the outputs of
docs/design.md, "Outputs".

All runs of a call, seeds × sweep settings, form one batch axis: one jitted program per
evaluation chunk (`jit(vmap(trainer.chunk))`) whose batch axis is sharded over a device
mesh (`mgjax.run.placement`), all devices of all processes by default. Between chunks the
host writes metrics rows and checks for numerical blow-up (`mgjax.run.recording`) and,
every `save_every_s`, saves a resume point (`mgjax.run.resume`): `run(..., resume=True)`
continues from it with the numbers an uninterrupted run gives, and `time_limit_s` pauses a
run (status "paused") so that it can be continued later. `mgjax train` (mgjax/cli/train.py)
and `experiments/benchmark.py` are thin CLIs over this.

Before anything compiles, the memory the runs need is estimated and held against what the
devices have (`mgjax.run.memory`); runs that do not fit are refused (MemoryCheckError).
The chunk program calls back to no Python code, so that XLA's persistent compilation
cache can store it (`mgjax.run.compile_cache`); the progress bar advances as chunks end.
While it sets up and compiles, a run says so, and how long its compile took last time, and
prints a line at least every 10 s (`mgjax.run.progress.Progress`).
"""

import functools
import time
from pathlib import Path
from typing import Any, Sequence

import jax
import numpy as np

from mgjax import envs
from mgjax.algorithms import describe, make_trainer, watched
from mgjax.config import Config
from mgjax.run import compile_cache, memory, outputs, placement, program_cache, recording, resume
from mgjax.run.memory import MemoryCheckError
from mgjax.run.progress import Progress
from mgjax.run.recording import Divergence
from mgjax.run.sweep import check_sweep, setting_name, sweep_settings

__all__ = ["Divergence", "MemoryCheckError", "run"]


class _Run:
  """One call of `run`: its runs, folders, outputs and clocks."""

  def __init__(
    self,
    config: Config,
    seeds: Sequence[int],
    out: Path,
    sweep,
    devices,
    resume_point: bool,
    log,
    tensorboard: bool | None = None,
  ):
    self.start = self.call_start = time.time()
    self.log, self.out, self.sweep, self.seeds = log, out, sweep, list(seeds)
    self.configs = check_sweep(config, sweep)
    self.settings = sweep_settings(sweep)
    self.identity = resume.identity(self.configs, seeds, sweep)
    self.meta = resume.load_checked(out, self.identity) if resume_point else None
    self.platform = resume.platform_key()
    changed = resume.platform_changes(self.meta and self.meta.get("platform"), self.platform)
    if changed:
      log(
        f"resumed on another platform than its point's ({'; '.join(changed)}): the run "
        "continues, but its numbers can differ from an uninterrupted run's in the last "
        "float places, which a long run amplifies"
      )
    if devices is None:  # a resumed run keeps its layout, so that its numbers do not change
      devices = resume.saved_devices(self.meta)
    if tensorboard is None:  # ... and its TensorBoard logging
      tensorboard = bool(self.meta and self.meta.get("tensorboard"))
    self.tensorboard = tensorboard
    self.mesh = placement.make_mesh(devices)
    placement.check_layout(len(seeds), len(self.settings), self.mesh)
    self.sharding = placement.runs_sharding(self.mesh)
    self.writes = jax.process_index() == 0
    self.dirs = [out / setting_name(s) for s in self.settings] if sweep else [out]
    self.runs = [(i, seed) for i in range(len(self.settings)) for seed in seeds]  # setting-major
    # Times of the earlier sessions of a resumed run.
    self.before = (
      self.meta["times"] if self.meta else {"wall_s": 0.0, "train_s": 0.0, "compile_s": 0.0}
    )
    self.sessions = 1 + (self.meta["sessions"] if self.meta else 0)

  def open_outputs(self, config: Config) -> list[recording.MetricsWriter]:
    """config.json of the call (with a sweep) and of each setting; metrics.csv writers."""
    if not self.writes:
      return []
    seeds, sweep = self.seeds, self.sweep
    if sweep:
      outputs.write_json(
        self.out / "config.json",
        {**describe(config), "seeds": seeds, "sweep": {k: list(v) for k, v in sweep.items()}},
      )
    writers = []
    for d, c, s in zip(self.dirs, self.configs, self.settings):
      d.mkdir(parents=True, exist_ok=True)
      outputs.write_json(
        d / "config.json", {**describe(c), "seeds": seeds, **({"sweep": s} if sweep else {})}
      )
      writers.append(
        recording.MetricsWriter(
          d / "metrics.csv",
          self.meta["iteration"] if self.meta else None,
          tensorboard=self.tensorboard,
        )
      )
    return writers

  def compile(self, trainer, folder: Path | None):
    """The initial state of every run (restored from the resume point, if any) and the
    compiled chunk, its programs kept in `folder` (`program_cache.folder_for`) -> (state,
    chunk, compile seconds, chunks already done)."""
    t0 = time.time()
    seeds = placement.to_global(np.asarray([s for _, s in self.runs], np.uint32), self.sharding)
    hparams = {
      k: placement.to_global(
        np.asarray([self.settings[i][k] for i, _ in self.runs], np.float32), self.sharding
      )
      for k in (self.sweep or {})
    }
    program = functools.partial(program_cache.compiled, config=trainer.config, folder=folder)
    init = program(
      jax.vmap(lambda s, hp: trainer.init(jax.random.key(s), hp)),
      (seeds, hparams),
      name="init",
      out_shardings=self.sharding,
    )
    state = init(seeds, hparams)
    if self.meta is not None:  # before the chunk compiles: a point that does not fit fails fast
      state = resume.restore(self.meta, state, self.sharding)
    chunk = program(
      jax.vmap(trainer.chunk),
      (state,),
      name="run_chunk",
      in_shardings=self.sharding,
      out_shardings=self.sharding,
    )
    compile_s = time.time() - t0
    sched = trainer.schedule
    self.log(
      f"compiled in {compile_s:.1f}s ({len(self.runs)} run(s) on {self.mesh.size} "
      f"device(s), {sched.num_iterations} iterations of {sched.batch_steps} env steps "
      "each)"
    )
    if self.meta is None:
      return state, chunk, compile_s, 0
    self.log(
      f"resumed at iteration {self.meta['iteration']} (chunk {self.meta['chunks']} of "
      f"{sched.num_chunks}) from {self.meta['_dir']}"
    )
    return state, chunk, compile_s, self.meta["chunks"]

  def summaries(self, config: Config, memory_estimate: dict[str, Any]) -> list[dict[str, Any]]:
    versions = outputs.package_versions()
    return [
      {
        "algo": config.algo,
        "env": config.env,
        "seeds": self.seeds,
        "status": "running",
        **({"sweep": s} if self.sweep else {}),
        "versions": versions,
        "host": outputs.host(),
        "device": str(self.mesh.devices.flat[0].platform),
        "devices": self.mesh.size,
        "processes": jax.process_count(),
        "memory_estimate": memory_estimate,
        "compile_cache": compile_cache.current(),
      }
      for s in self.settings
    ]

  def write_summaries(self, summaries, **fields) -> None:
    for d, summary in zip(self.dirs, summaries):
      summary.update(**fields)
      if self.writes:
        outputs.write_json(d / "summary.json", summary)

  def divergence(self, iters, chunk_index: int, eval_every: int, names) -> Divergence | None:
    bad = recording.first_nonfinite(iters, names)
    if bad is None:
      return None
    r, t, name = bad
    k, seed = self.runs[r]
    where = f"seed {seed}" + (f" ({setting_name(self.settings[k])})" if self.sweep else "")
    return Divergence(
      f"non-finite {name} at {where}, iteration "
      f"{chunk_index * eval_every + t + 1}; metrics so far are in "
      f"{self.dirs[k] / 'metrics.csv'}"
    )

  def save(self, state, chunks: int, iteration: int, train_s: float, compile_s: float) -> None:
    leaves = placement.fetch(outputs.plain_leaves(state))
    if self.writes:
      outputs.save_resume_point(
        self.out,
        leaves,
        {
          "identity": self.identity,
          "chunks": chunks,
          "iteration": iteration,
          "sessions": self.sessions,
          "devices": self.mesh.size,
          "platform": self.platform,
          "tensorboard": self.tensorboard,
          "times": {
            "wall_s": time.time() - self.start,
            "train_s": train_s,
            "compile_s": self.before["compile_s"] + compile_s,
          },
        },
      )


def run(
  config: Config,
  *,
  seeds: Sequence[int],
  out: Path,
  progress: bool = True,
  log=print,
  devices: int | None = None,
  sweep: dict[str, Sequence[float]] | None = None,
  resume: bool = False,
  save_every_s: float = 600.0,
  time_limit_s: float | None = None,
  tensorboard: bool | None = None,
  memory_check: bool = True,
  memory_estimate: dict[str, Any] | None = None,
  trainer=None,
) -> dict[str, Any]:
  """Trains `config` for each seed and sweep setting (one vmapped, sharded program) and
  writes config.json, metrics.csv, summary.json into `out` (or, with a sweep, into one
  folder per setting `out/NAME=VALUE,...`) and the checkpoint/ of all runs into `out`.
  Only process 0 writes files other than the checkpoint. Returns the (first) summary.

  Until the run finishes, a resume point out/resume/ is saved after the first chunk that
  ends `save_every_s` after the previous save. `resume=True` continues from it (ResumeError
  if there is none or it was saved by another config, seeds or sweep); metrics rows written
  after it are dropped and written again. With `time_limit_s`, the run saves and returns
  with status "paused" after the first chunk that ends past that many seconds.

  `tensorboard=True` also writes metrics.csv's scalars as TensorBoard event files into
  tensorboard/seed_S/ beside it; a resumed run keeps its first session's choice unless
  told otherwise.

  Before anything is compiled or written, the memory the runs need is estimated
  (`mgjax.run.memory.estimate`, or `memory_estimate` if the caller has it) and, unless
  `memory_check=False`, runs that do not fit raise MemoryCheckError; summary.json records
  the estimate. `trainer`: `make_trainer(config)` if the caller has built it already.

  `log` prints the run's lines; with `progress`, a heartbeat line every 10 s while it sets
  up and compiles, then a bar (`mgjax.run.progress.Progress`)."""
  # Lines while it sets up and compiles (a heartbeat every 10 s), then the bar.
  shown = Progress(
    enabled=progress and jax.process_index() == 0,
    bar=True,
    desc=f"{config.algo}/{config.env}",
    log=log,
  )
  shown.phase("setting up")
  with shown:
    r = _Run(config, seeds, out, sweep, devices, resume, shown.log, tensorboard)
    return _train(
      shown,
      r,
      config,
      save_every_s=save_every_s,
      time_limit_s=time_limit_s,
      memory_check=memory_check,
      memory_estimate=memory_estimate,
      trainer=trainer,
    )


def _train(
  shown: Progress,
  r: _Run,
  config: Config,
  *,
  save_every_s: float,
  time_limit_s: float | None,
  memory_check: bool,
  memory_estimate,
  trainer,
) -> dict[str, Any]:
  """`run`'s work on the runs of `r`, its lines through `shown`."""
  # No progress callback inside the chunk: XLA's cache cannot store a program with one.
  trainer = make_trainer(config) if trainer is None else trainer
  folder = program_cache.folder_for(trainer.config, trainer.algorithm, envs.ENV_NAMES)
  if memory_estimate is None:
    shown.phase("estimating memory")
    memory_estimate = memory.estimate(
      trainer, r.mesh, len(r.seeds), len(r.settings), tuple(r.sweep or ()), folder
    )
  if memory_check:
    memory.check(memory_estimate)
  writers = r.open_outputs(config)
  key = compile_cache.run_key(trainer.config, len(r.runs), r.mesh.size, tuple(r.sweep or ()))
  shown.phase("compiling", say=compile_cache.compiling_note(key))
  state, chunk, compile_s, done = r.compile(trainer, folder)
  compile_cache.record_compile(key, compile_s)
  # Next to the estimate, what XLA reports for the compiled chunk (per device).
  memory_estimate = {**memory_estimate, "compiled_chunk": memory.compiled_bytes(chunk)}
  shown.training(trainer.schedule.num_iterations, initial=done * config.eval_every)
  r.start -= r.before["wall_s"]
  summaries = r.summaries(config, memory_estimate)
  final, last_save = np.full(len(r.runs), np.nan), time.time()
  run_start = time.time() - r.before["train_s"]
  try:
    for i in range(done, trainer.num_chunks):
      state, metrics = chunk(state)
      evals = _record(shown, r, config, writers, metrics, i)
      final = evals["eval_return"]
      if i + 1 == trainer.num_chunks:
        break
      pause = time_limit_s is not None and time.time() - r.call_start >= time_limit_s
      if pause or time.time() - last_save >= save_every_s:
        r.save(state, i + 1, int(evals["iteration"][0]), time.time() - run_start, compile_s)
        last_save = time.time()
      if pause:
        return _pause(shown, r, summaries, evals)
  except Divergence:
    r.write_summaries(summaries, status="diverged", wall_time_s=time.time() - r.start)
    raise
  finally:
    shown.close()
    for writer in writers:
      writer.close()
  _finish(r, state, summaries, final, time.time() - run_start, compile_s)
  return summaries[0]


def _record(shown: Progress, r: _Run, config: Config, writers, metrics, i: int):
  """Chunk `i`'s metrics rows written, the bar advanced; Divergence if they went
  non-finite -> the chunk's evaluation metrics."""
  metrics = placement.fetch(metrics)
  iters, evals = metrics["iterations"], metrics["eval"]
  rows = recording.chunk_rows(
    iters,
    evals,
    r.runs,
    len(r.settings),
    algo=config.algo,
    env=config.env,
    wall_time_s=time.time() - r.start,
  )
  for writer, setting_rows in zip(writers, rows):
    writer.write(setting_rows)
  shown(evals["iteration"])
  shown.postfix(eval_return=float(np.mean(evals["eval_return"])))
  diverged = r.divergence(iters, i, config.eval_every, watched(config))
  if diverged is not None:
    raise diverged
  return evals


def _pause(shown: Progress, r: _Run, summaries, evals) -> dict[str, Any]:
  """The summaries marked paused and the line that says where the (saved) resume point is
  -> the (first) summary."""
  r.write_summaries(
    summaries,
    status="paused",
    total_env_steps=int(evals["env_steps"][0]),
    wall_time_s=time.time() - r.start,
  )
  shown.close()
  shown.log(
    f"paused at {int(evals['env_steps'][0])} env steps; resume point in "
    f"{r.out / outputs.RESUME_DIR}"
  )
  return summaries[0]


def _finish(r: _Run, state, summaries, final: np.ndarray, train_s: float, compile_s: float) -> None:
  """Final summaries, the checkpoint, and the resume point removed."""
  n = len(r.seeds)
  total_env_steps = int(placement.fetch(state.env_steps)[0])
  for k, summary in enumerate(summaries):
    mine = final[k * n : (k + 1) * n]
    summary.update(
      status="finished",
      total_env_steps=total_env_steps,
      final_eval_return={str(seed): float(x) for seed, x in zip(r.seeds, mine)},
      final_eval_return_mean=float(np.mean(mine)),
      # Throughput of the whole program (every seed and setting), after compilation.
      env_steps_per_s=total_env_steps * len(r.runs) / train_s,
      compile_time_s=r.before["compile_s"] + compile_s,
      train_time_s=train_s,
      wall_time_s=time.time() - r.start,
      sessions=r.sessions,
    )
  r.write_summaries(summaries)
  outputs.save_checkpoint(r.out / "checkpoint", state)
  if r.writes:
    outputs.remove_resume_point(r.out)
