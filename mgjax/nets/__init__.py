"""Networks as (init, apply) factories, the pure Policy/Model built on them, and running
observation statistics."""

from mgjax.nets.networks import (
  ACTION_MODES,
  MLP,
  Network,
  env_action,
  make_model,
  make_model_network,
  make_policy,
  make_policy_network,
  make_value_fn,
  make_value_network,
)
from mgjax.nets.normalization import RunningStats, init_stats, normalize, std, update_stats

__all__ = [
  "ACTION_MODES",
  "MLP",
  "Network",
  "RunningStats",
  "env_action",
  "init_stats",
  "make_model",
  "make_model_network",
  "make_policy",
  "make_policy_network",
  "make_value_fn",
  "make_value_network",
  "normalize",
  "std",
  "update_stats",
]
