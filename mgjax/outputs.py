"""Run outputs (DESIGN.md §5): config.json, metrics.csv, summary.json, orbax checkpoint/,
and the resume point resume/ of a run that has not finished.

metrics.csv is appended as evaluations finish, so an interrupted or diverged run keeps
everything it had measured; resume/ (the whole vmapped state, simulator included, saved
every few minutes) lets it continue from there with the same numbers.
"""
import csv
import importlib.metadata
import json
import math
import os
import platform
import shutil
from pathlib import Path
from typing import Any, Iterable

import jax
import numpy as np

METRIC_COLUMNS = (
    "algo", "env", "seed", "iteration", "env_steps", "eval_return", "eval_length",
    "train_return", "model_grad_cosine", "model_nll", "mle_loss", "mg_loss", "mg_grad_norm",
    "policy_loss", "value_loss", "entropy", "critic_loss", "actor_loss", "alpha", "q_mean",
    "model_epochs", "rollout_length", "wall_time_s")
_PACKAGES = ("jax", "jaxlib", "flax", "optax", "chex", "brax", "mujoco", "mujoco-mjx",
             "orbax-checkpoint", "numpy")


class OutputError(ValueError):
  """The output directory cannot be used; the message names the path."""


def concat_metrics(cells: Iterable[tuple[Path, dict[str, str]]], out: Path) -> bool:
  """Writes the rows of each (metrics.csv path, column overrides) to one CSV at `out`.

  Files written by different versions may have different columns; the output has all of
  them (in first-seen order) and leaves a row's missing ones empty. Returns whether any
  file was read (nothing is written otherwise)."""
  header: list[str] = []
  rows: list[dict[str, str]] = []
  for path, overrides in cells:
    with open(path, newline="") as f:
      reader = csv.DictReader(f)
      header += [k for k in reader.fieldnames or () if k not in header]
      rows.extend({**r, **overrides} for r in reader)
  if not header:
    return False
  with open(out, "w", newline="") as f:
    w = csv.DictWriter(f, header, restval="")
    w.writeheader()
    w.writerows(rows)
  return True


def prepare_out_dir(path: str | os.PathLike, overwrite: bool) -> Path:
  """Creates `path` (refusing a directory that already holds a run unless overwrite)."""
  out = Path(path)
  if out.exists() and not out.is_dir():
    raise OutputError(f"out={str(path)!r}: exists and is not a directory")
  if out.is_dir() and any(out.iterdir()) and not overwrite:
    raise OutputError(f"out={str(path)!r}: already used (not empty); pass --overwrite to "
                      "replace it")
  try:
    out.mkdir(parents=True, exist_ok=True)
    probe = out / ".write_test"
    probe.write_text("")
    probe.unlink()
  except OSError as e:
    raise OutputError(f"out={str(path)!r}: not writable ({e.strerror})") from None
  for name in ("metrics.csv", "summary.json", "config.json"):
    (out / name).unlink(missing_ok=True)
  remove_resume_point(out)
  return out


def package_versions() -> dict[str, str]:
  versions = {"python": platform.python_version()}
  for name in _PACKAGES:
    try:
      versions[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      versions[name] = "not installed"
  return versions


def write_json(path: Path, data: dict[str, Any]) -> None:
  tmp = path.with_suffix(".tmp")
  tmp.write_text(json.dumps(data, indent=2, default=_jsonable) + "\n")
  tmp.replace(path)


def _jsonable(x):
  if isinstance(x, (np.generic, np.ndarray)):
    return x.tolist()
  if isinstance(x, tuple):
    return list(x)
  raise TypeError(f"not JSON serialisable: {type(x)}")


def _cell(value: Any) -> Any:
  """Empty cell for NaN (not applicable), plain Python numbers otherwise."""
  if isinstance(value, (float, np.floating)):
    return "" if math.isnan(value) else float(value)
  if isinstance(value, np.integer):
    return int(value)
  return value


class MetricsWriter:
  """Appends rows to DIR/metrics.csv, flushing after every batch of rows.

  A new writer starts the file afresh; with `keep_through` (a resumed run) it keeps the
  rows of iterations up to that one and drops later ones, which the run will write again."""

  def __init__(self, path: Path, keep_through: int | None = None):
    self.path = path
    kept = []
    if keep_through is not None and path.exists():
      with open(path, newline="") as f:
        kept = [r for r in csv.DictReader(f) if int(r["iteration"]) <= keep_through]
    with open(path, "w", newline="") as f:
      w = csv.DictWriter(f, METRIC_COLUMNS, extrasaction="ignore", restval="")
      w.writeheader()
      w.writerows(kept)

  def write(self, rows: Iterable[dict[str, Any]]) -> None:
    with open(self.path, "a", newline="") as f:
      w = csv.DictWriter(f, METRIC_COLUMNS, extrasaction="ignore")
      for row in rows:
        w.writerow({k: _cell(row.get(k, float("nan"))) for k in METRIC_COLUMNS})


def is_key(x) -> bool:
  """Whether x (an array or an abstract array) holds typed PRNG keys."""
  return jax.dtypes.issubdtype(getattr(x, "dtype", None), jax.dtypes.prng_key)


def checkpointable(state: Any) -> Any:
  """What a checkpoint stores: the learner's state without the simulator state (MJX data
  holds zero-size arrays orbax cannot store, and envs are re-created by `reset`); typed
  PRNG keys become their uint32 data."""
  if hasattr(state, "env_state"):
    state = state.replace(env_state=None)
  def plain(x):
    if not is_key(x):
      return x
    if isinstance(x, jax.ShapeDtypeStruct):  # an abstract `like` tree for restore
      return jax.eval_shape(jax.random.key_data, x)
    return jax.random.key_data(x)

  return jax.tree.map(plain, state)


def save_checkpoint(path: Path, state: Any) -> None:
  """Saves a TrainState (vmapped or not; see `checkpointable`) with orbax to `path`."""
  import orbax.checkpoint as ocp
  ckpt = ocp.StandardCheckpointer()
  ckpt.save(path.absolute(), checkpointable(state), force=True)
  ckpt.wait_until_finished()


def restore_checkpoint(path: str | os.PathLike, like: Any) -> Any:
  """Restores a checkpoint written by `save_checkpoint` into the structure of `like`
  (e.g. `jax.eval_shape` of the trainer's init); keys come back as uint32 key data."""
  import orbax.checkpoint as ocp
  return ocp.StandardCheckpointer().restore(Path(path).absolute(), checkpointable(like))


# ------------------------------------------------------------------------------ resume points
RESUME_DIR = "resume"


def plain_leaves(state: Any) -> list[Any]:
  """The leaves of a (vmapped) state, typed PRNG keys as their uint32 data."""
  return [jax.random.key_data(x) if is_key(x) else x for x in jax.tree.leaves(state)]


def save_resume_point(out: Path, leaves: list[np.ndarray], meta: dict[str, Any]) -> None:
  """Writes out/resume/{state.npz, meta.json}; the previous point is replaced only once the
  new one is complete, so a run killed while saving keeps the older point."""
  tmp, final, old = out / (RESUME_DIR + ".tmp"), out / RESUME_DIR, out / (RESUME_DIR + ".old")
  shutil.rmtree(tmp, ignore_errors=True)
  tmp.mkdir(parents=True)
  np.savez(tmp / "state.npz", *leaves)
  write_json(tmp / "meta.json", {**meta, "leaves": len(leaves)})
  if final.exists():
    final.replace(old)
  tmp.replace(final)
  shutil.rmtree(old, ignore_errors=True)


def load_resume_meta(out: Path) -> dict[str, Any] | None:
  """meta.json of out's resume point (None if there is none)."""
  for name in (RESUME_DIR, RESUME_DIR + ".old"):  # .old: killed between the two renames
    path = out / name / "meta.json"
    if path.exists():
      return {**json.loads(path.read_text()), "_dir": str(out / name)}
  return None


def load_resume_leaves(meta: dict[str, Any]) -> list[np.ndarray]:
  with np.load(Path(meta["_dir"]) / "state.npz") as f:
    return [f[f"arr_{i}"] for i in range(meta["leaves"])]


def remove_resume_point(out: Path) -> None:
  for name in (RESUME_DIR, RESUME_DIR + ".tmp", RESUME_DIR + ".old"):
    shutil.rmtree(out / name, ignore_errors=True)
