"""mgjax: Model Gradient model-based reinforcement learning in JAX.

The model-gradient objective and its estimators (`model_gradient_loss`,
`actor_model_gradient_loss`, ...), the RL losses they build on, and the algorithms that use
them: `REGISTRY` maps each name to an `Algorithm`; `make_train(config)` returns a pure
`train(key)` for any of them; `load_policy(run_dir)` returns a trained run's policy.
"""
from mgjax.algorithms import (REGISTRY, Algorithm, get_algorithm, make_config, make_train,
                              make_trainer)
from mgjax.config import Config, ConfigError
from mgjax.losses import gae, gaussian_entropy, gaussian_nll, ppo_policy_loss, value_loss
from mgjax.model_gradient import (actor_gradient, actor_model_gradient_loss,
                                  model_gradient_loss, policy_gradient, rollout,
                                  similarity_value)
from mgjax.run.loading import load_policy
from mgjax.types import Model, Policy, Transition

__version__ = "0.2.0"

__all__ = [
    "Model", "Policy", "Transition",
    "gae", "gaussian_entropy", "gaussian_nll", "ppo_policy_loss", "value_loss",
    "model_gradient_loss", "policy_gradient", "rollout", "similarity_value",
    "actor_gradient", "actor_model_gradient_loss",
    "Algorithm", "Config", "ConfigError", "REGISTRY", "get_algorithm", "make_config",
    "make_train", "make_trainer", "load_policy",
]
