"""Algorithms: one `Algorithm` interface, the registry of every algorithm by name, and the
generic trainer that runs any of them.

    mg, mle, ppo      mgjax.algorithms.mg     PPO in a learned model (MG or NLL fit), or on real data
    mbpo, mg-sac      mgjax.algorithms.mbpo   SAC on real and branched ensemble data
    sac               mgjax.algorithms.sac    model-free SAC in the same loop (its stages are
                                              shared with mbpo)
"""
from mgjax.algorithms.base import Algorithm, Schedule, Trainer
from mgjax.algorithms.registry import (COLUMN_ALIASES, METRIC_COLUMNS, REGISTRY, SWEEPABLE,
                                       config_from_dict, describe, get_algorithm, make_config,
                                       make_train, make_trainer, preset, run_schedule,
                                       validate, watched)

__all__ = ["Algorithm", "COLUMN_ALIASES", "METRIC_COLUMNS", "REGISTRY", "SWEEPABLE",
           "Schedule", "Trainer", "config_from_dict", "describe", "get_algorithm",
           "make_config", "make_train", "make_trainer", "preset", "run_schedule", "validate",
           "watched"]
