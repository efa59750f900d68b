"""How much memory a call's runs need, estimated before anything compiles, against what the
devices have.

The state of the runs (replay buffers, networks, optimiser states, simulator states, keys)
is sized exactly, without allocating anything, by `jax.eval_shape` of the trainer's init
vmapped over the runs of one device. A chunk holds that state twice, its input and its
output (the runner keeps the input until the chunk returns), and on top of it the largest
temporary arrays of an iteration; for `mbpo` and `mg-sac` that is one step of the branched
rollouts (`rollout_batch` rows through the actor and the ensemble), which at MBPO's
published settings is larger than a seed's model buffer. Other temporaries (minibatches,
the evaluation's envs, XLA's own work space) are not counted: small next to large buffers,
they weigh as much as the state in small runs (the default run: 23 MiB estimated, 48 MiB
by XLA's report of its compiled chunk, which summary.json records beside the estimate).

On a CPU the devices share the host's memory, so the need of all its devices is held
against the host's available memory (/proc/meminfo's MemAvailable); on an accelerator the
need of one device against that device's memory (`memory_stats()["bytes_limit"]`).
"""

import dataclasses
import math
from pathlib import Path
from typing import Any, Sequence

import jax
import jax.numpy as jnp
from jax.sharding import Mesh

from mgjax.algorithms import Trainer, get_algorithm

COMPONENTS = ("real buffer", "model buffer", "networks", "optimiser states", "env states", "other")
# The state's fields by component, and the Config fields that set their size.
_FIELDS = {
  "buffer": ("real buffer", ("buffer_size",)),
  "model_buffer": ("model buffer", ("rollout_batch", "branch_schedule", "model_retain_epochs")),
  "sac": ("networks", ("sac_hidden",)),
  "agent_params": ("networks", ("policy_hidden", "value_hidden")),
  "model_params": ("networks", ("model_hidden", "ensemble_size")),
  "sac_opt": ("optimiser states", ("sac_hidden",)),
  "agent_opt": ("optimiser states", ("policy_hidden", "value_hidden")),
  "model_opt": ("optimiser states", ("model_hidden", "ensemble_size")),
  "env_state": ("env states", ("num_envs",)),
}
COPIES = 2  # the state as a chunk's input and as its output


class MemoryCheckError(ValueError):
  """The runs do not fit the memory; the message names the fields that set their size."""


def nbytes(tree: Any) -> int:
  """Bytes of the arrays (or abstract arrays) of a pytree; a typed PRNG key counts as its
  key data."""
  return sum(math.prod(x.shape) * x.dtype.itemsize for x in jax.tree.leaves(tree))


def state_components(state: Any) -> tuple[dict[str, int], dict[str, tuple[str, ...]]]:
  """(bytes by component, Config fields that size each component) of a state (or its
  `jax.eval_shape`), by the names of its fields."""
  sizes = dict.fromkeys(COMPONENTS, 0)
  fields: dict[str, tuple[str, ...]] = {c: () for c in COMPONENTS}
  parts = (
    {f.name: getattr(state, f.name) for f in dataclasses.fields(state)}
    if dataclasses.is_dataclass(state)
    else {"": state}
  )
  for name, part in parts.items():
    component, sized_by = _FIELDS.get(name, ("other", ()))
    sizes[component] += nbytes(part)
    fields[component] += tuple(f for f in sized_by if f not in fields[component])
  return sizes, fields


def transients(trainer: Trainer) -> dict[str, tuple[int, tuple[str, ...]]]:
  """The algorithm's largest temporary arrays per run (`Spec.transients`): name -> (bytes,
  the Config fields that set them)."""
  algorithm = get_algorithm(trainer.config.algo)
  return algorithm.spec.transients(trainer.config, trainer.setup.env)


def abstract_state(trainer: Trainer, runs: int, sweep: Sequence[str] = (), folder=None):
  """The vmapped state of `runs` runs as ShapeDtypeStructs (nothing allocated); with a
  `folder` (`mgjax.run.program_cache.folder_for`) kept there, so a later launch skips the
  trace."""
  from mgjax.run import program_cache

  def init():
    keys = jax.random.split(jax.random.key(0), runs)
    hparams = {name: jnp.zeros((runs,), jnp.float32) for name in sweep}
    return jax.vmap(trainer.init)(keys, hparams)

  return program_cache.abstract(
    init, name="state", config=trainer.config, folder=folder, key_args=(runs, tuple(sweep))
  )


def available(mesh: Mesh) -> tuple[int | None, str]:
  """(bytes available to the runs, where: "the host" or "each NAME device"): the host's
  MemAvailable on a CPU, a device's memory limit on an accelerator; None if unknown."""
  device = mesh.devices.flat[0]
  if device.platform == "cpu":
    return _host_available(), "the host"
  stats = device.memory_stats() or {}
  return stats.get("bytes_limit"), f"each {device.device_kind} device"


def _host_available(meminfo: str | None = None) -> int | None:
  if meminfo is None:
    try:
      meminfo = Path("/proc/meminfo").read_text()
    except OSError:
      meminfo = ""
  for line in meminfo.splitlines():
    if line.startswith("MemAvailable:"):
      return int(line.split()[1]) * 1024
  try:
    import psutil

    return int(psutil.virtual_memory().available)
  except ImportError:
    return None


def estimate(
  trainer: Trainer,
  mesh: Mesh,
  seeds: int,
  settings: int = 1,
  sweep: Sequence[str] = (),
  folder=None,
) -> dict[str, Any]:
  """The memory `seeds` × `settings` runs of `trainer` need on `mesh`, as summary.json
  records it: the state of one run by component (`per_run`), the transients of one run,
  the runs per device, the bytes needed where they are held (the host for a CPU, each
  device otherwise), what is available there, and which fields set the size (`sized_by`).
  `folder`: where `abstract_state` keeps the state's shapes."""
  runs = seeds * settings
  per_device = max(1, runs // mesh.size)
  state = abstract_state(trainer, per_device, sweep, folder)
  sizes, fields = state_components(state)
  per_run = {k: v // per_device for k, v in sizes.items()}
  temps = transients(trainer)
  local = sum(d.process_index == jax.process_index() for d in mesh.devices.flat)
  on_host = mesh.devices.flat[0].platform == "cpu"
  held = per_device * (local if on_host else 1)  # runs whose memory is held together
  need_by = {k: COPIES * v * held for k, v in per_run.items()}
  need_by.update({k: b * held for k, (b, _) in temps.items()})
  avail, where = available(mesh)
  # The fields of the largest parts, down to 80% of the need, after the run count.
  names = [f"seeds={seeds}"] + ([f"sweep={settings} settings"] if settings > 1 else [])
  if not on_host and mesh.size > 1:
    names.append(f"devices={mesh.size}")
  named, covered = [], 0
  sized = {**fields, **{k: f for k, (_, f) in temps.items()}}
  for part, b in sorted(need_by.items(), key=lambda kv: -kv[1]):
    if covered >= 0.8 * sum(need_by.values()) or not b:
      break
    covered += b
    named += [f for f in sized[part] if f not in named]
  c = trainer.config
  names += [f"{f}={getattr(c, f)!r}" for f in named]
  return {
    "per_run": per_run,
    "state_per_run": sum(per_run.values()),
    "transient_per_run": {k: b for k, (b, _) in temps.items()},
    "runs": runs,
    "runs_per_device": per_device,
    "devices": mesh.size,
    "platform": mesh.devices.flat[0].platform,
    "copies": COPIES,
    "need_bytes": sum(need_by.values()),
    "available_bytes": avail,
    "where": where,
    "sized_by": ", ".join(names),
  }


def compiled_bytes(compiled) -> dict[str, int] | None:
  """What XLA reports for a compiled program, per device: its arguments, outputs,
  temporaries, outputs aliased to arguments, and `total`, the sum less the aliased (None
  where the backend reports nothing)."""
  try:
    analysis = compiled.memory_analysis()
  except Exception:  # not every backend implements it
    return None
  if analysis is None:
    return None
  out = {
    k: int(getattr(analysis, f"{k}_size_in_bytes")) for k in ("argument", "output", "temp", "alias")
  }
  out["total"] = out["argument"] + out["output"] + out["temp"] - out["alias"]
  return out


def size(b: float) -> str:
  """Bytes in GiB, MiB below one GiB, KiB below one MiB."""
  for unit, scale, digits in (("GiB", 2**30, 1), ("MiB", 2**20, 0)):
    if b >= scale:
      return f"{b / scale:.{digits}f} {unit}"
  return f"{b / 2**10:.0f} KiB"


def fits(est: dict[str, Any]) -> bool:
  """Whether the need is within what is available (True where that is unknown)."""
  return est["available_bytes"] is None or est["need_bytes"] <= est["available_bytes"]


def refusal(est: dict[str, Any]) -> str:
  """The one line that refuses runs that do not fit."""
  need = "needs ~" + size(est["need_bytes"]) + ("" if est["platform"] == "cpu" else " per device")
  has = f"{est['where']} has {size(est['available_bytes'])}" + (
    " available" if est["platform"] == "cpu" else ""
  )
  return f"{est['sized_by']}: {need}, {has}"


def check(est: dict[str, Any]) -> None:
  """Raises MemoryCheckError (`refusal`'s line) if the runs do not fit."""
  if not fits(est):
    raise MemoryCheckError(refusal(est) + " (--no-memory-check runs anyway)")


def report(est: dict[str, Any], title: str = "") -> str:
  """The estimate component by component, for --dry-run."""
  n, k = est["runs"], est["runs_per_device"]
  held = n if est["platform"] == "cpu" else k
  lines = [
    f"memory estimate{' of ' + title if title else ''}: {n} run(s), {k} per device, "
    f"{est['devices']} {est['platform']} device(s); held together: {held} run(s) "
    f"on {'the host' if est['platform'] == 'cpu' else 'each device'}",
    f"  {'':32}{'per run':>12}{'all ' + str(held):>12}",
  ]
  row = lambda name, b: f"  {name:32}{size(b):>12}{size(b * held):>12}"
  lines += [row(name, b) for name, b in est["per_run"].items()]
  lines.append(row("state", est["state_per_run"]))
  lines.append(
    row(f"state x {est['copies']} (chunk input, output)", est["copies"] * est["state_per_run"])
  )
  lines += [row(f"{name} (temporary)", b) for name, b in est["transient_per_run"].items()]
  avail = est["available_bytes"]
  verdict = (
    "unknown memory: not checked"
    if avail is None
    else f"{est['where']} has {size(avail)}: " + ("fits" if fits(est) else "does not fit")
  )
  lines.append(f"  {'total':32}{'':12}{size(est['need_bytes']):>12}   {verdict}")
  if not fits(est):
    lines.append("  refused as: " + refusal(est))
  return "\n".join(lines)
