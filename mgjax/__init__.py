"""mgjax: Model Gradient model-based reinforcement learning in JAX."""
from mgjax.losses import gae, gaussian_entropy, gaussian_nll, ppo_policy_loss, value_loss
from mgjax.model_gradient import (actor_gradient, actor_model_gradient_loss,
                                  model_gradient_loss, policy_gradient, rollout,
                                  similarity_value)
from mgjax.types import Model, Policy, Transition

__version__ = "0.1.0"

__all__ = [
    "Model", "Policy", "Transition",
    "gae", "gaussian_entropy", "gaussian_nll", "ppo_policy_loss", "value_loss",
    "model_gradient_loss", "policy_gradient", "rollout", "similarity_value",
    "actor_gradient", "actor_model_gradient_loss",
]
