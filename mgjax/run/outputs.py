"""Run outputs (docs/design.md, "Outputs"): config.json, summary.json, orbax checkpoint/,
the resume point resume/ of a run that has not finished, and combining metrics.csv files
(written by `mgjax.run.recording.MetricsWriter`).

metrics.csv is appended as evaluations finish, so an interrupted or diverged run keeps
everything it had measured; resume/ (the whole vmapped state, simulator included, saved
every few minutes) lets it continue from there with the same numbers.
"""

import csv
import importlib.metadata
import json
import os
import platform
import shutil
from pathlib import Path
from typing import Any, Iterable

import jax
import numpy as np
from jax.sharding import SingleDeviceSharding

from mgjax.algorithms import COLUMN_ALIASES

_PACKAGES = (
  "jax",
  "jaxlib",
  "flax",
  "optax",
  "chex",
  "brax",
  "mujoco",
  "mujoco-mjx",
  "orbax-checkpoint",
  "numpy",
)
SIMD_EXTENSIONS = ("avx512f", "avx2", "avx")  # widest first


class OutputError(ValueError):
  """The output directory cannot be used; the message names the path."""


def concat_metrics(cells: Iterable[tuple[Path, dict[str, str]]], out: Path) -> bool:
  """Writes the rows of each (metrics.csv path, column overrides) to one CSV at `out`.

  Files written by different versions may have different columns; the output has all of
  them (in first-seen order, earlier names read as the current ones) and leaves a row's
  missing ones empty. Returns whether any file was read (nothing is written otherwise)."""
  header: list[str] = []
  rows: list[dict[str, str]] = []
  for path, overrides in cells:
    for r in read_metrics(path):
      header += [k for k in r if k not in header]
      rows.append({**r, **overrides})
  if not header:
    return False
  with open(out, "w", newline="") as f:
    w = csv.DictWriter(f, header, restval="")
    w.writeheader()
    w.writerows(rows)
  return True


def read_metrics(path: str | os.PathLike) -> list[dict[str, str]]:
  """The rows of a metrics.csv, columns of earlier versions under their current names."""
  with open(path, newline="") as f:
    return [{COLUMN_ALIASES.get(k, k): v for k, v in r.items()} for r in csv.DictReader(f)]


def check_out_dir(path: str | os.PathLike, overwrite: bool) -> None:
  """The checks of `prepare_out_dir` that write nothing: OutputError if `path` is a file, or
  a directory that already holds a run (unless overwrite)."""
  out = Path(path)
  if out.exists() and not out.is_dir():
    raise OutputError(f"out={str(path)!r}: exists and is not a directory")
  if out.is_dir() and any(out.iterdir()) and not overwrite:
    raise OutputError(
      f"out={str(path)!r}: already used (not empty); pass --overwrite to replace it"
    )


def prepare_out_dir(path: str | os.PathLike, overwrite: bool) -> Path:
  """Creates `path` (refusing a directory that already holds a run unless overwrite)."""
  out = Path(path)
  check_out_dir(path, overwrite)
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


def host(cpuinfo: str | None = None) -> dict[str, Any]:
  """The CPU this process runs on: {"cpu": its model name, "simd": the widest of
  `SIMD_EXTENSIONS` among its flags, "cores": `os.cpu_count()`}, read from Linux's
  /proc/cpuinfo (or from `cpuinfo`, text in its format); `platform.machine()` stands in for
  what that does not say.

  XLA:CPU chooses its kernels by the CPU's widest vector extension at run time, so the same
  program and seed give different float bits on an AVX2 and on an AVX-512 CPU: last-place
  differences that a long run amplifies."""
  if cpuinfo is None:
    try:
      cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
      cpuinfo = ""
  fields: dict[str, str] = {}
  for line in cpuinfo.splitlines():  # the first processor's lines come first
    key, _, value = line.partition(":")
    fields.setdefault(key.strip(), value.strip())
  flags = set(fields.get("flags", "").split())
  return {
    "cpu": fields.get("model name") or platform.machine(),
    "simd": next((ext for ext in SIMD_EXTENSIONS if ext in flags), platform.machine()),
    "cores": os.cpu_count(),
  }


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
  """Saves a train state (vmapped or not; see `checkpointable`) with orbax to `path`."""
  import orbax.checkpoint as ocp

  ckpt = ocp.StandardCheckpointer()
  ckpt.save(path.absolute(), checkpointable(state), force=True)
  ckpt.wait_until_finished()


def restore_checkpoint(path: str | os.PathLike, like: Any) -> Any:
  """Restores a checkpoint written by `save_checkpoint` into the structure of `like`
  (e.g. `jax.eval_shape` of the trainer's init); keys come back as uint32 key data.

  Arrays are matched by their path in the state (field and dict names), so a checkpoint of
  an earlier version restores as long as it holds every array `like` has; OutputError
  names the path and what is missing or unreadable otherwise."""
  import orbax.checkpoint as ocp

  where = f"checkpoint={str(path)!r}"
  path = Path(path).absolute()
  if not path.is_dir():
    raise OutputError(f"{where}: no checkpoint there")
  try:
    # Onto this process's first device, whatever devices wrote it (a run sharded over
    # several devices restores in a process that has one).
    ckpt, here = ocp.StandardCheckpointer(), SingleDeviceSharding(jax.devices()[0])
    tree = ckpt.metadata(path)
    tree = getattr(getattr(tree, "item_metadata", tree), "tree", tree)
    saved = ckpt.restore(
      path, jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=here), tree)
    )
  except Exception as e:  # orbax raises many types; one line says which file and why
    raise OutputError(
      f"{where}: unreadable ({str(e).splitlines()[0] if str(e) else type(e).__name__})"
    ) from None

  def pick(keypath, ref):
    node = saved
    for k in keypath:
      name = str(getattr(k, "name", getattr(k, "key", getattr(k, "idx", k))))
      if isinstance(node, (list, tuple)) and name.isdigit() and int(name) < len(node):
        node = node[int(name)]
      elif isinstance(node, dict) and name in node:
        node = node[name]
      else:
        raise OutputError(
          f"{where}: has no {jax.tree_util.keystr(keypath)} (written by another version of mgjax)"
        )
    if tuple(np.shape(node)) != tuple(ref.shape):
      raise OutputError(
        f"{where}: {jax.tree_util.keystr(keypath)} is {list(np.shape(node))}, "
        f"expected {list(ref.shape)}"
      )
    return jax.numpy.asarray(node, ref.dtype)

  return jax.tree_util.tree_map_with_path(pick, checkpointable(like))


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
