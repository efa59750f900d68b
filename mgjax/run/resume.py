"""Resume points: what a point must match to be continued, and restoring its state.

A point (`outputs.save_resume_point`: out/resume/{state.npz, meta.json}) holds the leaves of
the whole vmapped state and the identity of the runs that wrote it: every run's config,
the seeds and the sweep. A run continues from it only with the same identity, so a resumed
run gives the numbers an uninterrupted one gives, on the same platform: the point also
records the package versions, backend and vector extension it was written with, and a run
resumed on another is told which of them differ.
"""

import json
from pathlib import Path
from typing import Any, Sequence

import jax
import numpy as np
from jax.sharding import NamedSharding

from mgjax.algorithms import describe
from mgjax.config import ALIASES, Config
from mgjax.run import outputs
from mgjax.run.placement import to_global


class ResumeError(ValueError):
  """A run cannot be resumed from its folder; the message names the folder and the cause."""


def identity(configs: Sequence[Config], seeds: Sequence[int], sweep) -> dict[str, Any]:
  """What a resume point must match: every run's config, the seeds and the sweep."""
  # Through JSON, as meta.json stores it (tuples become lists).
  return json.loads(
    json.dumps(
      {
        "configs": [describe(c) for c in configs],
        "seeds": [int(s) for s in seeds],
        "sweep": {k: [float(x) for x in v] for k, v in (sweep or {}).items()},
      }
    )
  )


def load_checked(out: Path, expected: dict[str, Any]) -> dict[str, Any]:
  """The meta.json of out's resume point, if it was saved with the `expected` identity;
  ResumeError otherwise (no point, other seeds, sweep or config)."""
  meta = outputs.load_resume_meta(out)
  if meta is None:
    raise ResumeError(
      f"resume={str(out)!r}: no resume point in this folder (a run saves one "
      "every few minutes until it finishes)"
    )
  saved = meta["identity"]
  for what in ("seeds", "sweep"):
    if saved[what] != expected[what]:
      raise ResumeError(
        f"resume={str(out)!r}: saved with {what}={saved[what]}, not {expected[what]}"
      )
  # Names of earlier versions; fields added since take their defaults.
  defaults = json.loads(json.dumps(Config().to_dict()))
  for old, new in zip(saved["configs"], expected["configs"]):
    old = {**defaults, **{ALIASES.get(k, k): v for k, v in old.items()}}
    for name in sorted(set(old) | set(new)):
      if old.get(name) != new.get(name):
        raise ResumeError(
          f"resume={str(out)!r}: saved with {name}={old.get(name)!r}, not {new.get(name)!r}"
        )
  return meta


def platform_key() -> dict[str, str]:
  """What a run's float bits depend on besides its identity: the package versions, the
  backend and the CPU's widest vector extension (`outputs.host`)."""
  return {
    **outputs.package_versions(),
    "backend": jax.default_backend(),
    "simd": outputs.host()["simd"],
  }


def platform_changes(saved: dict[str, str] | None, current: dict[str, str]) -> list[str]:
  """Where `current` differs from the platform a resume point was `saved` on, as
  "NAME SAVED -> CURRENT" per field; none for points of versions that did not record it."""
  if saved is None:
    return []
  return [
    f"{k} {saved.get(k)} -> {current.get(k)}"
    for k in sorted(set(saved) | set(current))
    if saved.get(k) != current.get(k)
  ]


def saved_devices(meta: dict[str, Any] | None) -> int | None:
  """How many devices a resume point's runs were spread over, so that the resumed run keeps
  that layout and its numbers: the recorded count; for points of versions that did not
  record it, 1 on a CPU (they used every device JAX saw, one unless the CPU was split by
  hand); None (every device) otherwise, or without a point."""
  if meta is None:
    return None
  if "devices" in meta:
    return meta["devices"]
  return 1 if jax.devices()[0].platform == "cpu" else None


def restore(meta: dict[str, Any], like: Any, sharding: NamedSharding) -> Any:
  """The point's saved state laid out like `like`, the freshly initialised state."""
  leaves = outputs.load_resume_leaves(meta)
  like_leaves, treedef = jax.tree.flatten(like)
  where = f"resume={str(Path(meta['_dir']).parent)!r}"
  if len(leaves) != len(like_leaves):
    raise ResumeError(
      f"{where}: the saved state has {len(leaves)} arrays, this version's "
      f"{len(like_leaves)} (written by another version of mgjax; start the "
      "run afresh)"
    )
  restored = []
  for saved, ref in zip(leaves, like_leaves):
    x = to_global(np.asarray(saved), sharding)
    if outputs.is_key(ref):
      x = jax.random.wrap_key_data(x, impl=jax.random.key_impl(ref))
    if x.shape != ref.shape or x.dtype != ref.dtype:
      raise ResumeError(
        f"{where}: a saved array is {x.dtype}{list(x.shape)}, this "
        f"version's {ref.dtype}{list(ref.shape)} (written by another "
        "version of mgjax; start the run afresh)"
      )
    restored.append(x)
  return jax.tree.unflatten(treedef, restored)
