"""mgjax: Model Gradient model-based reinforcement learning in JAX.

The model-gradient objective and its estimators (`model_gradient_loss`,
`actor_model_gradient_loss`, ...), the RL losses they build on, and the algorithms that use
them: `REGISTRY` maps each name to an `Algorithm` (`register` adds one of your own,
`derive` a variant of one, `register_env` an environment);
`make_train(config)` returns a pure `train(key)` for any of them; `load_policy(run_dir)`
returns a trained run's policy.

The names load lazily, each with its module on first use: the losses and estimators
(`mgjax.model_gradient`, `mgjax.losses`, `mgjax.types`) need only jax and chex, so code that
uses them does not import the environments, the runner, plots or video.
"""

import importlib
import importlib.util

__version__ = "0.2.0"

# Each public name and the module that defines it.
_LAZY = {
  "Model": "mgjax.types",
  "Policy": "mgjax.types",
  "Transition": "mgjax.types",
  "gae": "mgjax.losses",
  "gaussian_entropy": "mgjax.losses",
  "gaussian_nll": "mgjax.losses",
  "ppo_policy_loss": "mgjax.losses",
  "transform_advantages": "mgjax.losses",
  "value_loss": "mgjax.losses",
  "model_gradient_loss": "mgjax.model_gradient",
  "make_model_gradient_loss": "mgjax.model_gradient",
  "policy_gradient": "mgjax.model_gradient",
  "rollout": "mgjax.model_gradient",
  "similarity_value": "mgjax.model_gradient",
  "actor_gradient": "mgjax.model_gradient",
  "actor_model_gradient_loss": "mgjax.model_gradient",
  "tanh_gaussian_policy": "mgjax.agents.sac",
  "Algorithm": "mgjax.algorithms",
  "REGISTRY": "mgjax.algorithms",
  "get_algorithm": "mgjax.algorithms",
  "make_config": "mgjax.algorithms",
  "make_train": "mgjax.algorithms",
  "make_trainer": "mgjax.algorithms",
  "register": "mgjax.algorithms",
  "Spec": "mgjax.algorithms",
  "derive": "mgjax.algorithms",
  "register_env": "mgjax.envs",
  "Config": "mgjax.config",
  "ConfigError": "mgjax.config",
  "load_policy": "mgjax.run.loading",
  "Progress": "mgjax.run.progress",
}

__all__ = [
  "Model",
  "Policy",
  "Transition",
  "gae",
  "gaussian_entropy",
  "gaussian_nll",
  "ppo_policy_loss",
  "transform_advantages",
  "value_loss",
  "model_gradient_loss",
  "make_model_gradient_loss",
  "policy_gradient",
  "rollout",
  "similarity_value",
  "actor_gradient",
  "actor_model_gradient_loss",
  "tanh_gaussian_policy",
  "Algorithm",
  "Config",
  "ConfigError",
  "REGISTRY",
  "get_algorithm",
  "make_config",
  "make_train",
  "Progress",
  "make_trainer",
  "register",
  "Spec",
  "derive",
  "register_env",
  "load_policy",
]


def __getattr__(name: str):
  """A public name from its module, or a submodule (`mgjax.envs`), imported on first use."""
  if name in _LAZY:
    value = getattr(importlib.import_module(_LAZY[name]), name)
  elif not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}"):
    value = importlib.import_module(f"{__name__}.{name}")
  else:
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
  globals()[name] = value  # later look-ups skip __getattr__
  return value


def __dir__() -> list[str]:
  return sorted(set(globals()) | set(__all__))
