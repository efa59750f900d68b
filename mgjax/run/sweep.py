"""Sweeps: every combination of swept settings, each a run of the same program."""

import dataclasses
import itertools
from typing import Sequence

from mgjax.algorithms import sweepable, validate
from mgjax.config import Config, ConfigError


def sweep_settings(sweep: dict[str, Sequence[float]] | None) -> list[dict[str, float]]:
  """Every combination of the swept values, in order; [{}] without a sweep."""
  if not sweep:
    return [{}]
  names = list(sweep)
  return [dict(zip(names, values)) for values in itertools.product(*sweep.values())]


def setting_name(setting: dict[str, float]) -> str:
  """The folder name of a sweep setting, e.g. "mle_weight=0.1,learning_rate=0.001"."""
  return ",".join(f"{k}={v:g}" for k, v in setting.items())


def check_sweep(config: Config, sweep: dict[str, Sequence[float]] | None) -> list[Config]:
  """The config of each sweep setting, validated; ConfigError names a bad field or value."""
  fields = sweepable(config.algo)
  for name, values in (sweep or {}).items():
    if name not in fields:
      raise ConfigError(
        f"sweep={name!r}: not sweepable for algo={config.algo!r}; choose from " + ", ".join(fields)
      )
    if not values:
      raise ConfigError(f"sweep={name!r}: no values")
  return [validate(dataclasses.replace(config, **s)) for s in sweep_settings(sweep)]
