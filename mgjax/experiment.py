"""Runs a config for several vmapped seeds (and sweep settings) and writes the outputs of
DESIGN.md §5.

All runs of a call, seeds × sweep settings, form one batch axis: one jitted program per
evaluation chunk (`jit(vmap(trainer.chunk))`) whose batch axis is sharded over a device
mesh (`jax.sharding.Mesh` + `NamedSharding`), all devices of all processes by default.
Between chunks the host writes metrics rows, checks for numerical blow-up, updates the
progress bar and, every `save_every_s`, saves a resume point: `run(..., resume=True)`
continues from it with the numbers an uninterrupted run gives, and `time_limit_s` pauses a
run (status "paused") so that it can be continued later. `experiments/train.py` and
`experiments/benchmark.py` are thin CLIs over this.
"""
import dataclasses
import itertools
import json
import time
from pathlib import Path
from typing import Any, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from mgjax import outputs
from mgjax.config import SWEEPABLE, Config, ConfigError, validate
from mgjax.train import make_trainer

class Divergence(RuntimeError):
  """A loss became NaN/inf; the message names the seed and the iteration."""


class LayoutError(ValueError):
  """The runs cannot be placed on the devices; the message names the field and value."""


class ResumeError(ValueError):
  """A run cannot be resumed from its folder; the message names the folder and the cause."""


# ------------------------------------------------------------------------------ placement
def make_mesh(devices: int | None = None) -> Mesh:
  """A 1-D mesh ("runs",) over the first `devices` of jax.devices() (all by default; with
  several processes, the devices of all of them)."""
  available = jax.devices()
  if devices is not None and not 1 <= devices <= len(available):
    raise LayoutError(f"devices={devices}: choose 1..{len(available)} "
                      f"({len(available)} {available[0].platform} device(s) available)")
  return Mesh(np.asarray(available[:devices or len(available)]), ("runs",))


def check_layout(num_seeds: int, num_settings: int, mesh: Mesh) -> None:
  """Runs are split evenly over the mesh; an uneven count is an error (never padded)."""
  runs = num_seeds * num_settings
  if runs % mesh.size:
    what = f"{num_seeds} seeds" + (f" x {num_settings} sweep settings" if num_settings > 1
                                   else "")
    raise LayoutError(f"seeds={num_seeds}: {what} = {runs} runs do not split evenly over "
                      f"{mesh.size} devices; use a multiple of {mesh.size} runs or --devices")


def sweep_settings(sweep: dict[str, Sequence[float]] | None) -> list[dict[str, float]]:
  """Every combination of the swept values, in order; [{}] without a sweep."""
  if not sweep:
    return [{}]
  names = list(sweep)
  return [dict(zip(names, values)) for values in itertools.product(*sweep.values())]


def setting_name(setting: dict[str, float]) -> str:
  """The folder name of a sweep setting, e.g. "mle_weight=0.1,learning_rate=0.001"."""
  return ",".join(f"{k}={v:g}" for k, v in setting.items())


def check_sweep(config: Config, sweep: dict[str, Sequence[float]] | None) -> list[Config]:
  """The config of each sweep setting, validated; ConfigError names a bad field or value."""
  for name, values in (sweep or {}).items():
    if name not in SWEEPABLE[config.algo]:
      raise ConfigError(f"sweep={name!r}: not sweepable for algo={config.algo!r}; choose from "
                        + ", ".join(SWEEPABLE[config.algo]))
    if not values:
      raise ConfigError(f"sweep={name!r}: no values")
  return [validate(dataclasses.replace(config, **s)) for s in sweep_settings(sweep)]


def _global(x: np.ndarray, sharding: NamedSharding) -> jax.Array:
  """A host array (the same on every process) as a global array laid out by `sharding`."""
  x = np.asarray(x)
  return jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx])


def _fetch(tree):
  """Device arrays -> numpy on this host; with several processes, gathered from all."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    return multihost_utils.process_allgather(tree, tiled=True)
  return jax.tree.map(np.asarray, tree)


class _Progress:
  """tqdm bar over iterations, advanced from inside jit by a host callback."""

  def __init__(self, total: int, enabled: bool, desc: str):
    self.bar, self.total = None, total
    if enabled:
      from tqdm.auto import tqdm
      self.bar = tqdm(total=total, desc=desc, unit="it", dynamic_ncols=True)
    self.done = 0

  def __call__(self, iteration):
    # vmapped seeds report the same iteration, possibly out of order.
    it = min(int(np.max(np.asarray(iteration))), self.total)
    if self.bar is not None and it > self.done:
      self.bar.update(it - self.done)
    self.done = max(self.done, it)

  def postfix(self, **kw):
    if self.bar is not None:
      self.bar.set_postfix({k: f"{v:.4g}" for k, v in kw.items()}, refresh=True)

  def close(self):
    if self.bar is not None:
      self.bar.close()


def _watched(c: Config) -> list[str]:
  """The losses a config computes; a non-finite value of any of them is a blow-up."""
  if c.uses_sac:
    return ["critic_loss", "actor_loss", "model_nll"] + (
        ["mg_loss"] if c.algo == "mg-sac" and c.mg_steps else [])
  names = ["policy_loss", "value_loss"]
  if c.uses_model:
    names.append("model_nll")
    names += ["mle_loss"] if c.mle_steps else []
    names += ["mg_loss"] if c.algo == "mg" and c.mg_steps else []
  return names


def _first_nonfinite(iters: dict[str, np.ndarray], names: Sequence[str]):
  """(seed index, iteration offset, name) of the earliest non-finite loss, or None."""
  first = None
  for name in names:
    for s, t in zip(*np.nonzero(~np.isfinite(iters[name]))):
      if first is None or (t, s) < (first[1], first[0]):
        first = (int(s), int(t), name)
  return first


def _identity(configs: Sequence[Config], seeds: Sequence[int], sweep) -> dict[str, Any]:
  """What a resume point must match: every run's config, the seeds and the sweep."""
  # Through JSON, as meta.json stores it (tuples become lists).
  return json.loads(json.dumps({"configs": [c.to_dict() for c in configs],
                                "seeds": [int(s) for s in seeds],
                                "sweep": {k: [float(x) for x in v]
                                          for k, v in (sweep or {}).items()}}))


def _check_resumable(out: Path, meta: dict[str, Any] | None, identity: dict[str, Any]) -> None:
  if meta is None:
    raise ResumeError(f"resume={str(out)!r}: no resume point in this folder (a run saves one "
                      "every few minutes until it finishes)")
  saved = meta["identity"]
  for what in ("seeds", "sweep"):
    if saved[what] != identity[what]:
      raise ResumeError(f"resume={str(out)!r}: saved with {what}={saved[what]}, "
                        f"not {identity[what]}")
  for old, new in zip(saved["configs"], identity["configs"]):
    for name in sorted(set(old) | set(new)):
      if old.get(name) != new.get(name):
        raise ResumeError(f"resume={str(out)!r}: saved with {name}={old.get(name)!r}, "
                          f"not {new.get(name)!r}")


def _restore(leaves: list[np.ndarray], like: Any, sharding: NamedSharding) -> Any:
  """A saved state (host leaves) laid out like `like`, the freshly initialised state."""
  like_leaves, treedef = jax.tree.flatten(like)
  if len(leaves) != len(like_leaves):
    raise ResumeError(f"resume: the saved state has {len(leaves)} arrays, this version's "
                      f"{len(like_leaves)}")
  restored = []
  for saved, ref in zip(leaves, like_leaves):
    x = _global(saved, sharding)
    if outputs.is_key(ref):
      x = jax.random.wrap_key_data(x, impl=jax.random.key_impl(ref))
    if x.shape != ref.shape or x.dtype != ref.dtype:
      raise ResumeError(f"resume: a saved array is {x.dtype}{list(x.shape)}, this version's "
                        f"{ref.dtype}{list(ref.shape)}")
    restored.append(x)
  return jax.tree.unflatten(treedef, restored)


def run(config: Config, *, seeds: Sequence[int], out: Path, progress: bool = True,
        log=print, devices: int | None = None,
        sweep: dict[str, Sequence[float]] | None = None, resume: bool = False,
        save_every_s: float = 600.0, time_limit_s: float | None = None) -> dict[str, Any]:
  """Trains `config` for each seed and sweep setting (one vmapped, sharded program) and
  writes config.json, metrics.csv, summary.json into `out` (or, with a sweep, into one
  folder per setting `out/NAME=VALUE,...`) and the checkpoint/ of all runs into `out`.
  Only process 0 writes files other than the checkpoint. Returns the (first) summary.

  Until the run finishes, a resume point out/resume/ is saved after the first chunk that
  ends `save_every_s` after the previous save. `resume=True` continues from it (ResumeError
  if there is none or it was saved by another config, seeds or sweep); metrics rows written
  after it are dropped and written again. With `time_limit_s`, the run saves and returns
  with status "paused" after the first chunk that ends past that many seconds."""
  start = time.time()
  configs = check_sweep(config, sweep)
  settings = sweep_settings(sweep)
  mesh = make_mesh(devices)
  check_layout(len(seeds), len(settings), mesh)
  sharding = NamedSharding(mesh, PartitionSpec("runs"))
  writes = jax.process_index() == 0
  dirs = [out / setting_name(s) for s in settings] if sweep else [out]
  identity = _identity(configs, seeds, sweep)
  meta = outputs.load_resume_meta(out) if resume else None
  if resume:
    _check_resumable(out, meta, identity)
  versions = outputs.package_versions()
  writers = []
  if writes:
    if sweep:
      outputs.write_json(out / "config.json", {**config.to_dict(), "seeds": list(seeds),
                                               "sweep": {k: list(v) for k, v in sweep.items()}})
    for d, c, s in zip(dirs, configs, settings):
      d.mkdir(parents=True, exist_ok=True)
      outputs.write_json(d / "config.json", {**c.to_dict(), "seeds": list(seeds),
                                             **({"sweep": s} if sweep else {})})
      writers.append(outputs.MetricsWriter(d / "metrics.csv",
                                           meta["iteration"] if meta else None))
  bar = _Progress(config.num_iterations, progress and writes, f"{config.algo}/{config.env}")
  trainer = make_trainer(config, progress=bar)
  c = trainer.components.config
  n = len(seeds)
  runs = [(i, seed) for i in range(len(settings)) for seed in seeds]  # setting-major
  run_seeds = _global(np.asarray([seed for _, seed in runs], np.uint32), sharding)
  hparams = {k: _global(np.asarray([settings[i][k] for i, _ in runs], np.float32), sharding)
             for k in (sweep or {})}

  t0 = time.time()
  init = jax.jit(jax.vmap(lambda s, hp: trainer.init(jax.random.key(s), hp)),
                 out_shardings=sharding)
  state = init(run_seeds, hparams)
  chunk = jax.jit(jax.vmap(trainer.chunk), in_shardings=sharding,
                  out_shardings=sharding).lower(state).compile()
  compile_s = time.time() - t0
  log(f"compiled in {compile_s:.1f}s ({len(runs)} run(s) on {mesh.size} device(s), "
      f"{c.num_iterations} iterations of {c.batch_steps} env steps each)")
  # Times of the earlier sessions of a resumed run.
  done_chunks, before = 0, {"wall_s": 0.0, "train_s": 0.0, "compile_s": 0.0}
  if meta is not None:
    state = _restore(outputs.load_resume_leaves(meta), state, sharding)
    done_chunks, before = meta["chunks"], meta["times"]
    log(f"resumed at iteration {meta['iteration']} (chunk {done_chunks} of "
        f"{trainer.num_chunks}) from {meta['_dir']}")
  sessions = 1 + (meta["sessions"] if meta else 0)
  call_start, last_save = start, time.time()
  start -= before["wall_s"]

  def save(chunks: int, iteration: int, train_s: float) -> None:
    leaves = _fetch(outputs.plain_leaves(state))
    if writes:
      outputs.save_resume_point(out, leaves, {
          "identity": identity, "chunks": chunks, "iteration": iteration, "sessions": sessions,
          "times": {"wall_s": time.time() - start, "train_s": train_s,
                    "compile_s": before["compile_s"] + compile_s}})

  summaries = [{"algo": c.algo, "env": c.env, "seeds": list(seeds), "status": "running",
                **({"sweep": s} if sweep else {}), "versions": versions,
                "device": str(mesh.devices.flat[0].platform), "devices": mesh.size,
                "processes": jax.process_count()} for s in settings]
  final = np.full(len(runs), np.nan)
  run_start = time.time() - before["train_s"]
  try:
    for i in range(done_chunks, trainer.num_chunks):
      state, metrics = chunk(state)
      metrics = _fetch(metrics)
      iters, evals = metrics["iterations"], metrics["eval"]
      now = time.time() - start
      rows = [[] for _ in settings]
      for r, (k, seed) in enumerate(runs):
        row = {name: float(np.nanmean(v[r])) if np.any(np.isfinite(v[r])) else float("nan")
               for name, v in iters.items() if name != "env_steps"}
        row.update(algo=c.algo, env=c.env, seed=seed, iteration=int(evals["iteration"][r]),
                   env_steps=int(evals["env_steps"][r]),
                   eval_return=float(evals["eval_return"][r]),
                   eval_length=float(evals["eval_length"][r]), wall_time_s=round(now, 2))
        rows[k].append(row)
      for writer, setting_rows in zip(writers, rows):
        writer.write(setting_rows)
      final = evals["eval_return"]
      bar.postfix(eval_return=float(np.mean(final)))
      bad = _first_nonfinite(iters, _watched(c))
      if bad is not None:
        r, t, name = bad
        k, seed = runs[r]
        where = f"seed {seed}" + (f" ({setting_name(settings[k])})" if sweep else "")
        raise Divergence(f"non-finite {name} at {where}, iteration {i * c.eval_every + t + 1}; "
                         f"metrics so far are in {dirs[k] / 'metrics.csv'}")
      if i + 1 == trainer.num_chunks:
        break
      pause = time_limit_s is not None and time.time() - call_start >= time_limit_s
      if pause or time.time() - last_save >= save_every_s:
        save(i + 1, int(evals["iteration"][0]), time.time() - run_start)
        last_save = time.time()
      if pause:
        for d, summary in zip(dirs, summaries):
          summary.update(status="paused", total_env_steps=int(evals["env_steps"][0]),
                         wall_time_s=time.time() - start)
          if writes:
            outputs.write_json(d / "summary.json", summary)
        log(f"paused at {int(evals['env_steps'][0])} env steps; resume point in "
            f"{out / outputs.RESUME_DIR}")
        return summaries[0]
  except Divergence:
    if writes:
      for d, summary in zip(dirs, summaries):
        summary.update(status="diverged", wall_time_s=time.time() - start)
        outputs.write_json(d / "summary.json", summary)
    raise
  finally:
    bar.close()
  train_s = time.time() - run_start
  total_env_steps = int(_fetch(state.env_steps)[0])
  for k, (d, summary) in enumerate(zip(dirs, summaries)):
    mine = final[k * n:(k + 1) * n]
    summary.update(
        status="finished", total_env_steps=total_env_steps,
        final_eval_return={str(seed): float(r) for seed, r in zip(seeds, mine)},
        final_eval_return_mean=float(np.mean(mine)),
        # Throughput of the whole program (every seed and setting), after compilation.
        env_steps_per_s=total_env_steps * len(runs) / train_s,
        compile_time_s=before["compile_s"] + compile_s, train_time_s=train_s,
        wall_time_s=time.time() - start, sessions=sessions)
    if writes:
      outputs.write_json(d / "summary.json", summary)
  outputs.save_checkpoint(out / "checkpoint", state)
  if writes:
    outputs.remove_resume_point(out)
  return summaries[0]
