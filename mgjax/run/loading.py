"""A trained policy from a run folder, without the trainer: `load_policy`.

A run folder (docs/design.md, "Outputs") holds config.json, which rebuilds the algorithm's
networks, and checkpoint/, the final state of every run of the call (seeds × sweep settings,
setting-major). Only the part of the state the acting policy reads is restored
(`Algorithm.policy_params`): the policy's network and, for PPO's family, the observation
statistics it normalises with. Checkpoints of earlier versions load as long as they hold
that part.
"""

import json
import os
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from mgjax.config import Config, ConfigError
from mgjax.run.outputs import OutputError, restore_checkpoint


class RunFolder(NamedTuple):
  """Where a run's policies live: its config, its checkpoint and its rows in it."""

  config: Config
  checkpoint: Path
  seeds: list[int]
  offset: int  # the checkpoint's row of the folder's first seed (its sweep setting)
  runs: int  # runs in the checkpoint
  where: str  # "run_dir='...'", for errors

  def row(self, seed: int) -> int:
    """The checkpoint's row of `seed`; OutputError if the run has no such seed."""
    if seed not in self.seeds:
      raise OutputError(
        f"seed={seed}: not a seed of {self.where} (its seeds: {', '.join(map(str, self.seeds))})"
      )
    return self.offset + self.seeds.index(seed)


def _read_json(path: Path, where: str) -> dict[str, Any]:
  try:
    return json.loads(path.read_text())
  except FileNotFoundError:
    raise OutputError(f"{where}: no {path.name} (not an mgjax run folder)") from None
  except (OSError, ValueError) as e:
    raise OutputError(f"{where}: {path.name} is unreadable ({e})") from None


def find_run(run_dir: str | os.PathLike) -> RunFolder:
  """The config, checkpoint and runs-axis rows of a run folder, or of one setting's folder of
  a sweep; OutputError says why not, in one line."""
  from mgjax.algorithms import config_from_dict

  run_dir = Path(run_dir)
  where = f"run_dir={str(run_dir)!r}"
  if not run_dir.is_dir():
    raise OutputError(f"{where}: no such folder")
  data = _read_json(run_dir / "config.json", where)
  sweep = data.get("sweep")
  setting, num_settings, top = 0, 1, run_dir
  if isinstance(sweep, dict) and any(isinstance(v, list) for v in sweep.values()):
    names = sorted(p.name for p in run_dir.iterdir() if (p / "config.json").exists())
    raise OutputError(
      f"{where}: a sweep of {len(names)} settings; load one setting's folder ({', '.join(names)})"
    )
  if sweep is not None:  # one setting of a sweep: the checkpoint is its parent's
    from mgjax.run.sweep import setting_name, sweep_settings

    top = run_dir.parent
    whole = _read_json(top / "config.json", f"run_dir={str(top)!r}").get("sweep", {})
    settings = [setting_name(s) for s in sweep_settings({k: tuple(v) for k, v in whole.items()})]
    if run_dir.name not in settings:
      raise OutputError(f"{where}: not one of its sweep's settings ({', '.join(settings)})")
    setting, num_settings = settings.index(run_dir.name), len(settings)
  seeds = [int(s) for s in data.get("seeds", [])]
  if not seeds:
    raise OutputError(f"{where}: config.json names no seeds (written by another version of mgjax)")
  try:
    config = config_from_dict(data)
  except (ConfigError, TypeError, ValueError) as e:
    raise OutputError(
      f"{where}: its config.json does not describe a run of this version of mgjax ({e})"
    ) from None
  checkpoint = top / "checkpoint"
  if not checkpoint.is_dir():
    status = _status(top)
    reason = (
      f"its status is {status!r}; a checkpoint is written when the run finishes "
      "(resume it with --resume)"
      if status in ("running", "paused")
      else "no checkpoint/ folder"
    )
    raise OutputError(f"{where}: {reason}")
  return RunFolder(
    config, checkpoint, seeds, setting * len(seeds), num_settings * len(seeds), where
  )


def _status(run_dir: Path) -> str | None:
  try:
    return json.loads((run_dir / "summary.json").read_text()).get("status")
  except (OSError, ValueError, AttributeError):
    return None


def restore_policy_params(run_dir: str | os.PathLike, seeds: Sequence[int] | None = None):
  """The trainer of a run folder and the saved policy parameters of `seeds` (default: all
  the run's seeds) -> (trainer, seeds, params with a leading axis over those seeds)."""
  from mgjax.algorithms import make_trainer

  run = find_run(run_dir)
  seeds = list(seeds) if seeds else run.seeds
  rows = np.asarray([run.row(s) for s in seeds])
  trainer = make_trainer(run.config)
  keys = jax.vmap(jax.random.key)(jnp.arange(run.runs, dtype=jnp.uint32))
  like = trainer.algorithm.policy_params(jax.eval_shape(jax.vmap(trainer.init), keys))
  params = restore_checkpoint(run.checkpoint, like)
  return trainer, seeds, jax.tree.map(lambda x: np.asarray(x)[rows], params)


def load_policy(
  run_dir: str | os.PathLike, seed: int | None = None, deterministic: bool = True
) -> Callable[..., jax.Array]:
  """The trained policy of one seed of a run folder, as a pure, jittable function.

      act = mgjax.load_policy("runs/hopper-mg", seed=0)
      action = jax.jit(act)(obs)             # obs [obs_size] or [B, obs_size]

  The action is in the env's range ([-1, 1]): the policy's mean, squashed as in training
  (PPO's family clips or takes tanh per `action_mode`, SAC's family takes tanh), with the
  run's observation normalisation inside; the same action as the evaluations of
  metrics.csv. deterministic=False samples the policy instead: `act(obs, key)`.

  Args:
    run_dir: a run folder of `experiments/train.py` or `mgjax.run.run` (a benchmark cell's
      folder under runs/), or one setting's folder of a sweep.
    seed: which of the run's seeds (default: its first).
    deterministic: the mean action or a sample.
  Raises:
    OutputError: one line naming the folder (or seed) and why it cannot load: no such
      folder, no config.json, no checkpoint (a paused run), a corrupt checkpoint, or one
      of another version of mgjax.
  """
  trainer, _, params = restore_policy_params(run_dir, None if seed is None else [seed])
  act = trainer.algorithm.make_policy(
    trainer.setup, jax.tree.map(lambda x: x[0], params), deterministic
  )
  size = trainer.setup.env.obs_size

  def policy(obs: jax.Array, key: jax.Array | None = None) -> jax.Array:
    if not deterministic and key is None:
      raise ValueError("key: a stochastic policy (deterministic=False) needs a PRNG key")
    obs = jnp.asarray(obs, jnp.float32)
    if obs.ndim not in (1, 2) or obs.shape[-1] != size:
      raise ValueError(
        f"obs: shape {tuple(obs.shape)}; expected [{size}] or [B, {size}] "
        f"({trainer.config.env}'s observations)"
      )
    action = act(obs if obs.ndim == 2 else obs[None], key)
    return action if obs.ndim == 2 else action[0]

  return policy
