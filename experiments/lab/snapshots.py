"""Snapshots of a run for the alignment probes (`lab.probe`, `sac_probe`): one
run's state saved as a resume point, loaded back with its config and trainer, and a run
trained to several numbers of evaluation chunks, continuing from the latest snapshot below
each where there is one."""

from pathlib import Path
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np


def save_snapshot(path, config, state, extra: dict | None = None) -> None:
  """Writes one run's state as a resume point (`outputs.save_resume_point`: path/resume/)
  that `load_snapshot` reads, like a resume point of `experiments/train.py`."""
  from mgjax.run import outputs, resume

  leaves = [np.asarray(x)[None] for x in outputs.plain_leaves(state)]
  outputs.save_resume_point(
    Path(path),
    leaves,
    {
      "identity": resume.identity([config], [0], None),
      "iteration": int(state.iteration),
      "env_steps": int(state.env_steps),
      **(extra or {}),
    },
  )


def load_snapshot_meta(path) -> dict[str, Any] | None:
  """The meta.json of path's resume point (None if there is none)."""
  from mgjax.run import outputs

  return outputs.load_resume_meta(Path(path))


def load_snapshot(path, run_index: int = 0):
  """Run `run_index` of the resume point in `path` (written by `save_snapshot` or by a
  paused `train.py` run) -> (config, trainer, state); ValueError naming the folder if
  there is none."""
  from mgjax.algorithms import config_from_dict, make_trainer
  from mgjax.run import outputs

  meta = outputs.load_resume_meta(Path(path))
  if meta is None:
    raise ValueError(f"snapshot={str(path)!r}: no resume point in this folder")
  with np.load(Path(meta["_dir"]) / "state.npz") as f:  # one run's rows, a leaf at a time
    runs = f["arr_0"].shape[0]
    if not 0 <= run_index < runs:
      raise ValueError(f"run_index={run_index}: the point in {str(path)!r} holds {runs} runs")
    saved = [f[f"arr_{i}"][run_index] for i in range(meta["leaves"])]
  configs = meta["identity"]["configs"]  # one per sweep setting, seeds innermost
  config = config_from_dict(configs[run_index * len(configs) // runs])
  trainer = make_trainer(config)
  like_leaves, treedef = jax.tree.flatten(jax.eval_shape(trainer.init, jax.random.key(0)))
  impl = jax.random.key_impl(jax.random.key(0))  # the state's keys all come from jax.random.key
  leaves = []
  for x, ref in zip(saved, like_leaves):
    x = jnp.asarray(x)
    leaves.append(jax.random.wrap_key_data(x, impl=impl) if outputs.is_key(ref) else x)
  return config, trainer, jax.tree.unflatten(treedef, leaves)


def make_snapshots(config, root, at: Sequence[int], seed: int, log=print) -> list[tuple[int, Any]]:
  """(chunks, folder) for each n in `at`: root/chunks=n, a snapshot of one run of `config`
  (seed `seed`) after n evaluation chunks. Missing ones are trained: from the latest
  snapshot below them of the same config and seed where there is one (a resumed run gives
  the straight run's numbers bit for bit), else from the start."""
  root = Path(root).expanduser()
  wanted = [(n, root / f"chunks={n}") for n in at]
  missing = [n for n, d in wanted if load_snapshot_meta(d) is None]
  if not missing:
    return wanted
  from mgjax.algorithms import config_from_dict

  trainer, state, done = None, None, 0
  counts = (d.name.removeprefix("chunks=") for d in root.glob("chunks=*"))
  for n in sorted((int(c) for c in counts if c.isdigit()), reverse=True):
    meta = load_snapshot_meta(root / f"chunks={n}")
    if n >= max(missing) or meta is None or meta.get("seed") != seed:
      continue
    if config_from_dict(meta["identity"]["configs"][0]) == config:  # before loading its state
      _, trainer, state = load_snapshot(root / f"chunks={n}")
      done = n
      log(f"continuing from the snapshot after {n} chunks ({int(state.env_steps)} env steps)")
      break
  if not done:
    from mgjax.algorithms import make_trainer

    trainer = make_trainer(config)
    state = jax.jit(trainer.init)(jax.random.key(seed))
  chunk = jax.jit(trainer.chunk)
  for n in range(done + 1, max(missing) + 1):
    state, metrics = chunk(state)
    if n in missing:
      eval_return = float(metrics["eval"]["eval_return"])
      save_snapshot(
        root / f"chunks={n}", config, state, {"chunks": n, "eval_return": eval_return, "seed": seed}
      )
      log(
        f"snapshot after {n} chunks ({int(state.env_steps)} env steps, eval return "
        f"{eval_return:.1f})"
      )
  return wanted
