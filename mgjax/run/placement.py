"""Where runs go: a 1-D device mesh over which the batch axis of all runs is sharded, and
moving arrays between the host and that layout.

On a CPU, XLA can present the machine as several devices (`split_cpu`); the command lines
give several runs of an algorithm a device per core by default (`cpu_layout`), which costs
less than vmapping them all on one device for `mg`, `mle` and `ppo`, and keep the SAC
family's runs on one device, where the split costs more (`cpu_split`; RESULTS.md, "Every
core for several runs").
"""

import os

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from mgjax.algorithms import get_algorithm


class LayoutError(ValueError):
  """The runs cannot be placed on the devices; the message names the field and value."""


def cpu_layout(runs: int, cores: int | None = None) -> int:
  """How many XLA CPU devices `runs` runs get on a machine of `cores` cores: the fewest
  that divide the runs evenly and give every core a device of its own, at most 4 per core
  (5 seeds on 2 cores: 5 devices); where no such count exists, the most devices, at most one
  per core, that divide the runs."""
  cores = cores or os.cpu_count() or 1
  for n in range(min(cores, runs), 4 * cores + 1):
    if runs % n == 0 and (n >= cores or n == runs):
      return n
  return max(n for n in range(1, cores + 1) if runs % n == 0)


def cpu_split(algo: str) -> bool:
  """Whether several runs of `algo` on a CPU go, by default, one XLA device per core: its
  `Spec.cpu_split`. Split over a CPU's cores, the SAC loop gained nothing at MBPO's hopper
  sizes and ran 7x slower at small sizes (RESULTS.md, "Every core for several runs"), so
  the SAC family's is False."""
  return get_algorithm(algo).spec.cpu_split


def cpu_devices(algo: str, runs: int, cores: int | None = None) -> int:
  """How many XLA CPU devices `runs` runs of `algo` get by default: `cpu_layout` for an
  algorithm whose runs gain from a device per core (`cpu_split`), else 1."""
  return cpu_layout(runs, cores) if cpu_split(algo) else 1


def default_devices(algo: str) -> int | None:
  """The `devices` of a fresh run of `algo` that names none, in a process whose CPU may be
  split for other runs (benchmark.py's cells): 1 on a CPU for an algorithm not `cpu_split`;
  otherwise None, every device. (A resumed run keeps its own layout.)"""
  if jax.devices()[0].platform == "cpu" and not cpu_split(algo):
    return 1
  return None


def split_cpu(devices: int) -> None:
  """Presents the CPU to XLA as `devices` devices (`jax_num_cpu_devices`), so that runs
  sharded over them use every core. Call it before JAX starts its backends; afterwards, or
  where the CPU was split already (XLA_FLAGS' xla_force_host_platform_device_count,
  `jax_num_cpu_devices`), it changes nothing. Accelerators are not affected."""
  if (
    "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", "")
    or jax.config.jax_num_cpu_devices >= 0
  ):
    return
  try:
    jax.config.update("jax_num_cpu_devices", devices)
  except RuntimeError:  # the backends have started: keep the devices they have
    pass


def make_mesh(devices: int | None = None) -> Mesh:
  """A 1-D mesh ("runs",) over the first `devices` of jax.devices() (all by default; with
  several processes, the devices of all of them)."""
  available = jax.devices()
  if devices is not None and not 1 <= devices <= len(available):
    raise LayoutError(
      f"devices={devices}: choose 1..{len(available)} "
      f"({len(available)} {available[0].platform} device(s) available)"
    )
  return Mesh(np.asarray(available[: devices or len(available)]), ("runs",))


def check_layout(num_seeds: int, num_settings: int, mesh: Mesh) -> None:
  """Runs are split evenly over the mesh; an uneven count is an error (never padded)."""
  runs = num_seeds * num_settings
  if runs % mesh.size:
    what = f"{num_seeds} seeds" + (f" x {num_settings} sweep settings" if num_settings > 1 else "")
    raise LayoutError(
      f"seeds={num_seeds}: {what} = {runs} runs do not split evenly over "
      f"{mesh.size} devices; use a multiple of {mesh.size} runs or --devices"
    )


def runs_sharding(mesh: Mesh) -> NamedSharding:
  """The leading (runs) axis split over the mesh, everything else replicated."""
  return NamedSharding(mesh, PartitionSpec("runs"))


def to_global(x: np.ndarray, sharding: NamedSharding) -> jax.Array:
  """A host array (the same on every process) as a global array laid out by `sharding`."""
  x = np.asarray(x)
  return jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx])


def fetch(tree):
  """Device arrays -> numpy on this host; with several processes, gathered from all."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils

    return multihost_utils.process_allgather(tree, tiled=True)
  return jax.tree.map(np.asarray, tree)
