"""Algorithms: one `Algorithm` interface, the registry of every algorithm by name, and the
generic trainer that runs any of them.

    mg, mle, ppo      mgjax.algorithms.mg     PPO in a learned model (MG or NLL fit), or on
                                              real data
    mbpo, mg-sac      mgjax.algorithms.mbpo   SAC on real and branched ensemble data
    sac               mgjax.algorithms.sac    model-free SAC in the same loop (its stages are
                                              shared with mbpo)

Code outside mgjax adds an algorithm with `register(algorithm)`, or a variant of one with
`register(derive(base, name, ...))`.
"""

from mgjax.algorithms import registry
from mgjax.algorithms.base import Algorithm, Schedule, Spec, Trainer, derive
from mgjax.algorithms.registry import (
  COLUMN_ALIASES,
  REGISTRY,
  config_from_dict,
  describe,
  get_algorithm,
  make_config,
  make_train,
  make_trainer,
  metric_columns,
  preset,
  register,
  run_schedule,
  sweepable,
  validate,
  watched,
)

__all__ = [
  "Algorithm",
  "COLUMN_ALIASES",
  "METRIC_COLUMNS",
  "REGISTRY",
  "SWEEPABLE",
  "Schedule",
  "Spec",
  "Trainer",
  "config_from_dict",
  "derive",
  "describe",
  "get_algorithm",
  "make_config",
  "make_train",
  "make_trainer",
  "metric_columns",
  "preset",
  "register",
  "run_schedule",
  "sweepable",
  "validate",
  "watched",
]


def __getattr__(name: str):
  """METRIC_COLUMNS and SWEEPABLE (`registry.__getattr__`): the registry as it is now."""
  if name in ("METRIC_COLUMNS", "SWEEPABLE"):
    return getattr(registry, name)
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
