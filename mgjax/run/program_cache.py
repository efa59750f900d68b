"""Traced programs kept on disk beside the compilation cache, so that a later launch of the
same run skips tracing as well as compiling.

XLA's persistent cache (`mgjax.run.compile_cache`) stores compiled code, but JAX must still
trace and lower a program to find its entry: for an MJX training chunk that is most of a
cached launch (RESULTS.md, "Fast to start"). Here the runner's programs (its `init` and
`chunk`) are exported once (`jax.export`, StableHLO) into FOLDER/programs/, where FOLDER is
the compilation cache's, and a later launch deserializes them instead of tracing; their
compile is then a compilation-cache hit. Every launch, first or later, runs the exported
program, so a run's numbers do not depend on whether its program was found on disk.

An entry is found only by a key of everything that shapes the traced program: the source
of the mgjax package (every .py file), the versions of the packages it traces through, the
JAX flags that change tracing, the config, the arguments' tree, shapes and dtypes, and the
device layout. A program that calls code outside mgjax and the versioned packages (an
algorithm or an env registered from outside) is not kept; nor is one of several processes.
`rm -rf ~/.cache/mgjax/xla` clears both caches.
"""

import dataclasses
import functools
import hashlib
import json
import os
import pickle
import re
from pathlib import Path
from typing import Any, Callable

import jax
from jax import export

from mgjax.run import compile_cache, outputs
from mgjax.run.compile_cache import source_digest  # noqa: F401 (part of this module's API)

_FLAGS = (
  "jax_enable_x64",
  "jax_default_matmul_precision",
  "jax_default_prng_impl",
  "jax_threefry_partitionable",
  "jax_numpy_rank_promotion",
  "jax_numpy_dtype_promotion",
)
_TRACED_PACKAGES = ("jax", "jaxlib", "flax", "optax", "chex", "brax", "mujoco", "mujoco-mjx")


def program_key(name: str, config: Any, args: Any, sharding: Any) -> str:
  """The entry's name: a hash of the program's name, mgjax's source, the traced packages'
  versions, the tracing flags, the config (a dataclass or dict), the arguments' tree,
  shapes and dtypes, and the sharding (mesh shape and device ids)."""
  versions = outputs.package_versions()
  avals = [
    (str(getattr(a, "dtype", type(a))), tuple(getattr(a, "shape", ())))
    for a in jax.tree.leaves(args)
  ]
  parts = {
    "name": name,
    "source": source_digest(),
    "versions": {k: versions.get(k) for k in ("python", *_TRACED_PACKAGES)},
    "flags": {f: str(getattr(jax.config, f, None)) for f in _FLAGS},
    "config": config if isinstance(config, dict) else _fields(config),
    # Static parts of some pytrees print with their address (MJX's wrapped arrays, made
    # from the env's model): the config and versions above fix them.
    "tree": re.sub(r" at 0x[0-9a-fA-F]+", "", str(jax.tree.structure(args))),
    "avals": avals,
    "sharding": repr(sharding),
    "devices": [str(d) for d in jax.devices()],
  }
  text = json.dumps(parts, sort_keys=True, default=str)
  return hashlib.sha256(text.encode()).hexdigest()[:32]


def _fields(config) -> dict:
  return {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}


def folder_for(config: Any, algorithm: Any, env_names: tuple[str, ...]) -> Path | None:
  """Where the runner keeps `config`'s programs: FOLDER/programs/ of the compilation cache
  that `mgjax.run.compile_cache.enable` set (None: no cache, or not enabled there), and
  None for an algorithm defined outside mgjax, an env outside `env_names`, or a run of
  several processes."""
  root = compile_cache.programs()
  if root is None or jax.process_count() > 1 or config.env not in env_names:
    return None
  functions = [f for f in algorithm if callable(f)]
  if not all(_module(f).startswith("mgjax.") for f in functions):
    return None
  return root


def _module(fn: Callable) -> str:
  """The module that defines `fn`, through `functools.partial` (an algorithm's functions
  bound to the loop they run)."""
  while isinstance(fn, functools.partial):
    fn = fn.func
  return getattr(fn, "__module__", None) or ""


class Program:
  """A compiled program over pytrees, run from its exported form: `program(*args)` ->
  outputs; `memory_analysis()` is the compiled executable's; `loaded` says whether the
  exported form came from disk (no tracing)."""

  def __init__(self, compiled, out_tree, loaded: bool):
    self._compiled, self._out_tree, self.loaded = compiled, out_tree, loaded

  def __call__(self, *args):
    return jax.tree.unflatten(self._out_tree, self._compiled(*jax.tree.leaves(args)))

  def memory_analysis(self):
    return self._compiled.memory_analysis()


def compile(
  fn: Callable,
  args: tuple,
  *,
  name: str,
  folder: Path | None,
  key: str,
  in_shardings: Any = None,
  out_shardings: Any = None,
) -> Program:
  """`fn(*args)` compiled through its exported form as the program `jit_NAME` (the name of
  its compilation-cache entries), with the shardings `jax.jit` takes (one for every
  argument and one for every output). With a `folder`, the exported form is read from
  FOLDER/KEY.* when there (a file that cannot be read is traced again and replaced) and
  written there when traced; without one it is traced every time."""
  leaves, in_tree = jax.tree.flatten(args)
  exported = out_tree = None
  paths = (folder / f"{key}.stablehlo", folder / f"{key}.tree") if folder else None
  if paths and all(p.exists() for p in paths):
    try:
      exported = export.deserialize(bytearray(paths[0].read_bytes()))
      out_tree = pickle.loads(paths[1].read_bytes())
    except Exception:  # a torn or foreign file: trace again
      exported = None
  loaded = exported is not None
  if not loaded:
    trees = []

    def flat(*xs):
      out = fn(*jax.tree.unflatten(in_tree, xs))
      leaves_out, tree = jax.tree.flatten(out)
      trees.append(tree)
      return leaves_out

    jitted = jax.jit(flat, in_shardings=in_shardings, out_shardings=out_shardings)
    exported = export.export(jitted)(*leaves)
    out_tree = trees[-1]
    if paths:
      try:
        _write(paths[1], pickle.dumps(out_tree))
        _write(paths[0], exported.serialize())  # last: its presence marks a whole entry
      except (ImportError, OSError):  # no flatbuffers, or a read-only cache: not kept
        pass

  def call(*xs):
    return exported.call(*xs)

  call.__name__ = call.__qualname__ = name
  compiled = (
    jax.jit(call, in_shardings=in_shardings, out_shardings=out_shardings).lower(*leaves).compile()
  )
  return Program(compiled, out_tree, loaded)


def compiled(
  fn: Callable,
  args: tuple,
  *,
  name: str,
  config: Any,
  folder: Path | None,
  in_shardings: Any = None,
  out_shardings: Any = None,
):
  """The runner's programs: `fn(*args)` compiled, through its exported form kept in
  `folder` under `program_key` (`compile`), or, without a folder, as any jitted function
  (`jax.jit(fn).lower(*args).compile()`; the same numbers, bit for bit)."""
  shardings = {
    k: v
    for k, v in (("in_shardings", in_shardings), ("out_shardings", out_shardings))
    if v is not None
  }
  if folder is None:
    return jax.jit(fn, **shardings).lower(*args).compile()
  key = program_key(name, config, args, (in_shardings, out_shardings))
  return compile(fn, args, name=name, folder=folder, key=key, **shardings)


def abstract(fn: Callable, *, name: str, config: Any, folder: Path | None, key_args: Any = ()):
  """`jax.eval_shape(fn)` (its ShapeDtypeStructs), kept in `folder` like the programs, under
  `program_key(name, config, key_args)`: a later launch reads it instead of tracing `fn`."""
  path = folder / f"{program_key(name, config, key_args, None)}.shapes" if folder else None
  if path is not None and path.exists():
    try:
      return pickle.loads(path.read_bytes())
    except Exception:  # a torn or foreign file: trace again
      pass
  shapes = jax.eval_shape(fn)
  if path is not None:
    try:
      _write(path, pickle.dumps(shapes))
    except OSError:
      pass
  return shapes


def _write(path: Path, data: bytes) -> None:
  """Written whole or not at all (a launch beside this one never reads half a file)."""
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(f".{path.name}.{os.getpid()}")
  tmp.write_bytes(bytes(data))
  os.replace(tmp, path)
