"""Runs a config for several vmapped seeds and writes the outputs of DESIGN.md §5.

The seeds run as one jitted program per evaluation chunk (`jit(vmap(trainer.chunk))`);
between chunks the host writes metrics rows, checks for numerical blow-up and updates the
progress bar. `experiments/train.py` and `experiments/benchmark.py` are thin CLIs over this.
"""
import time
from pathlib import Path
from typing import Any, Sequence

import jax
import numpy as np

from mgjax import outputs
from mgjax.config import Config
from mgjax.train import make_trainer

class Divergence(RuntimeError):
  """A loss became NaN/inf; the message names the seed and the iteration."""


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
  if c.algo == "mbpo":
    return ["critic_loss", "actor_loss", "model_nll"]
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


def run(config: Config, *, seeds: Sequence[int], out: Path, progress: bool = True,
        log=print) -> dict[str, Any]:
  """Trains `config` for each seed (vmapped) and writes config.json, metrics.csv,
  summary.json and checkpoint/ into `out` (which the caller has prepared)."""
  start = time.time()
  versions = outputs.package_versions()
  outputs.write_json(out / "config.json", {**config.to_dict(), "seeds": list(seeds)})
  writer = outputs.MetricsWriter(out / "metrics.csv")
  bar = _Progress(config.num_iterations, progress, f"{config.algo}/{config.env}")
  trainer = make_trainer(config, progress=bar)
  c = trainer.components.config
  keys = jax.vmap(jax.random.key)(np.asarray(seeds, np.uint32))

  t0 = time.time()
  init = jax.jit(jax.vmap(trainer.init))
  state = init(keys)
  chunk = jax.jit(jax.vmap(trainer.chunk)).lower(state).compile()
  compile_s = time.time() - t0
  log(f"compiled in {compile_s:.1f}s ({len(seeds)} seed(s), {c.num_iterations} iterations "
      f"of {c.batch_steps} env steps each)")

  summary = {"algo": c.algo, "env": c.env, "seeds": list(seeds), "status": "running",
             "versions": versions, "device": str(jax.devices()[0].platform)}
  final = np.full(len(seeds), np.nan)
  run_start = time.time()
  try:
    for i in range(trainer.num_chunks):
      state, metrics = chunk(state)
      metrics = jax.tree.map(np.asarray, metrics)
      iters, evals = metrics["iterations"], metrics["eval"]
      now = time.time() - start
      rows = []
      for s, seed in enumerate(seeds):
        row = {name: float(np.nanmean(v[s])) if np.any(np.isfinite(v[s])) else float("nan")
               for name, v in iters.items() if name != "env_steps"}
        row.update(algo=c.algo, env=c.env, seed=seed, iteration=int(evals["iteration"][s]),
                   env_steps=int(evals["env_steps"][s]),
                   eval_return=float(evals["eval_return"][s]),
                   eval_length=float(evals["eval_length"][s]), wall_time_s=round(now, 2))
        rows.append(row)
      writer.write(rows)
      final = evals["eval_return"]
      bar.postfix(eval_return=float(np.mean(final)))
      bad = _first_nonfinite(iters, _watched(c))
      if bad is not None:
        s, t, name = bad
        iteration = i * c.eval_every + t + 1
        raise Divergence(f"non-finite {name} at seed {seeds[s]}, iteration {iteration}; "
                         f"metrics so far are in {out / 'metrics.csv'}")
  except Divergence:
    summary.update(status="diverged", wall_time_s=time.time() - start)
    outputs.write_json(out / "summary.json", summary)
    raise
  finally:
    bar.close()
  train_s = time.time() - run_start
  total_env_steps = int(np.asarray(state.env_steps)[0])
  summary.update(
      status="finished", total_env_steps=total_env_steps,
      final_eval_return={str(seed): float(r) for seed, r in zip(seeds, final)},
      final_eval_return_mean=float(np.mean(final)),
      env_steps_per_s=total_env_steps * len(seeds) / train_s,
      compile_time_s=compile_s, train_time_s=train_s, wall_time_s=time.time() - start)
  outputs.write_json(out / "summary.json", summary)
  outputs.save_checkpoint(out / "checkpoint", state)
  return summary

