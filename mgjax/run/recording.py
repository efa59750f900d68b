"""What a run records while it goes: metrics.csv rows per evaluation (and, on request, the
same scalars as TensorBoard event files) and the watch for numerical blow-up. (What it
prints while it goes: `mgjax.run.progress`.)

metrics.csv is appended as evaluations finish, so an interrupted or diverged run keeps
everything it had measured.
"""

import csv
import math
import time
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from mgjax import extras
from mgjax.algorithms import metric_columns
from mgjax.run.outputs import read_metrics


class Divergence(RuntimeError):
  """A loss became NaN/inf; the message names the seed and the iteration."""


def _cell(value: Any) -> Any:
  """Empty cell for NaN (not applicable), plain Python numbers otherwise."""
  if isinstance(value, (float, np.floating)):
    return "" if math.isnan(value) else float(value)
  if isinstance(value, np.integer):
    return int(value)
  return value


class MetricsWriter:
  """Appends rows to DIR/metrics.csv, flushing after every batch. Its columns are
  `mgjax.algorithms.metric_columns()` when the writer is made: every algorithm registered
  by then has its metrics among them.

  A new writer starts the file afresh; with `keep_through` (a resumed run) it keeps the
  rows of iterations up to that one and drops later ones, which the run will write again."""

  def __init__(self, path: Path, keep_through: int | None = None, tensorboard: bool = False):
    self.path, self.columns = path, metric_columns()
    kept = []
    if keep_through is not None and path.exists():
      kept = [r for r in read_metrics(path) if int(r["iteration"]) <= keep_through]
    with open(path, "w", newline="") as f:
      w = csv.DictWriter(f, self.columns, extrasaction="ignore", restval="")
      w.writeheader()
      w.writerows(kept)
    self.tensorboard = None
    if tensorboard:
      self.tensorboard = TensorBoardWriter(
        path.parent / "tensorboard", kept, resumed=keep_through is not None, columns=self.columns
      )

  def write(self, rows: Iterable[dict[str, Any]]) -> None:
    rows = list(rows)
    with open(self.path, "a", newline="") as f:
      w = csv.DictWriter(f, self.columns, extrasaction="ignore")
      for row in rows:
        w.writerow({k: _cell(row.get(k, float("nan"))) for k in self.columns})
    if self.tensorboard is not None:
      self.tensorboard.write(rows)

  def close(self) -> None:
    if self.tensorboard is not None:
      self.tensorboard.close()


class TensorBoardWriter:
  """metrics.csv's rows as TensorBoard scalars (tensorboardX, the tensorboard extra; without
  it, MissingExtra at construction, before the run trains): one event folder per seed,
  FOLDER/seed_S, each metric under its column name with the env steps as the step (metrics
  without a value in a row, such as a model's metrics for ppo, are left out). The columns
  are metrics.csv's (`columns`; default `metric_columns()`).

  A resumed run purges what its earlier sessions logged past the rows metrics.csv keeps
  (`kept`), so that TensorBoard shows every step once. Events reach the files through
  tensorboardX's writer thread, completely once `close` returns (the run closes the writer
  when it finishes, pauses or stops); metrics.csv is the record."""

  NOT_SCALARS = ("algo", "env", "seed", "iteration", "env_steps", "wall_time_s")

  def __init__(
    self,
    folder: Path,
    kept: Sequence[dict[str, Any]] = (),
    resumed: bool = False,
    columns: Sequence[str] | None = None,
  ):
    self.summary_writer = extras.require("tensorboardX", "TensorBoard logging").SummaryWriter
    self.folder, self.resumed, self.writers = folder, resumed, {}
    self.columns = metric_columns() if columns is None else columns
    self.last_kept: dict[int, int] = {}
    for r in kept:
      seed = int(r["seed"])
      self.last_kept[seed] = max(self.last_kept.get(seed, -1), int(r["env_steps"]))

  def _writer(self, seed: int):
    if seed not in self.writers:
      purge = self.last_kept.get(seed, -1) + 1 if self.resumed else None
      # A file of its own per session, in the order of the sessions, even for two sessions
      # in the same second (readers take the files in name order).
      self.writers[seed] = self.summary_writer(
        str(self.folder / f"seed_{seed}"), purge_step=purge, filename_suffix=f".{time.time_ns()}"
      )
    return self.writers[seed]

  def write(self, rows: Iterable[dict[str, Any]]) -> None:
    for row in rows:
      writer, step = self._writer(int(row["seed"])), int(row["env_steps"])
      for name in self.columns:
        value = _cell(row.get(name, float("nan")))
        if name not in self.NOT_SCALARS and isinstance(value, (int, float)):
          writer.add_scalar(name, value, step)

  def close(self) -> None:
    for writer in self.writers.values():
      writer.close()
    self.writers = {}


def chunk_rows(
  iters: dict[str, np.ndarray],
  evals: dict[str, np.ndarray],
  runs: Sequence[tuple[int, int]],
  num_settings: int,
  *,
  algo: str,
  env: str,
  wall_time_s: float,
) -> list[list[dict[str, Any]]]:
  """One metrics row per run of a finished chunk, grouped by sweep setting: per-iteration
  metrics averaged over the chunk's iterations (NaN where never finite)."""
  rows: list[list[dict[str, Any]]] = [[] for _ in range(num_settings)]
  for r, (k, seed) in enumerate(runs):
    row = {
      name: float(np.nanmean(v[r])) if np.any(np.isfinite(v[r])) else float("nan")
      for name, v in iters.items()
      if name != "env_steps"
    }
    row.update(
      algo=algo,
      env=env,
      seed=seed,
      iteration=int(evals["iteration"][r]),
      env_steps=int(evals["env_steps"][r]),
      eval_return=float(evals["eval_return"][r]),
      eval_length=float(evals["eval_length"][r]),
      wall_time_s=round(wall_time_s, 2),
    )
    rows[k].append(row)
  return rows


def first_nonfinite(iters: dict[str, np.ndarray], names: Sequence[str]):
  """(run index, iteration offset, name) of the earliest non-finite value of `names`, or
  None."""
  first = None
  for name in names:
    for s, t in zip(*np.nonzero(~np.isfinite(iters[name]))):
      if first is None or (t, s) < (first[1], first[0]):
        first = (int(s), int(t), name)
  return first
