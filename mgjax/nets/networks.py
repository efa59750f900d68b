"""Flax networks and the pure `Policy`/`Model` functions built on them.

Networks are factories returning `(init, apply)` pairs (brax style); parameters live apart
from the network definitions. Observations are normalised by running statistics
(`mgjax.nets.normalization`) passed in as data.
"""

import dataclasses
from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from mgjax.losses import gaussian_nll, gaussian_sample
from mgjax.nets.normalization import RunningStats, normalize, std
from mgjax.types import Model, Params, Policy


# --------------------------------------------------------------------------- networks
@dataclasses.dataclass(frozen=True)
class Network:
  """A parameterised function: init(key) -> params, apply(params, *inputs) -> outputs."""

  init: Callable[[jax.Array], Params]
  apply: Callable[..., jax.Array]


class MLP(nn.Module):
  hidden: Sequence[int]
  out: int
  activation: Callable = nn.swish
  final_scale: float = 1.0

  @nn.compact
  def __call__(self, x):
    # He-scaled truncated normals, not orthogonal init: the latter's QR decompositions,
    # vmapped over seeds, deadlocked XLA:CPU (jax 0.10.2) when several ran in one program.
    init = lambda scale: nn.initializers.variance_scaling(scale, "fan_in", "truncated_normal")
    for h in self.hidden:
      x = self.activation(nn.Dense(h, kernel_init=init(2.0))(x))
    return nn.Dense(self.out, kernel_init=init(self.final_scale**2))(x)


class _GaussianHead(nn.Module):
  """Mean from an MLP, state-independent learned log-std (the usual PPO choice)."""

  hidden: Sequence[int]
  action_size: int
  init_log_std: float

  @nn.compact
  def __call__(self, obs):
    mean = MLP(self.hidden, self.action_size, nn.tanh, final_scale=0.01)(obs)
    log_std = self.param(
      "log_std", nn.initializers.constant(self.init_log_std), (self.action_size,)
    )
    return mean, jnp.broadcast_to(log_std, mean.shape)


def make_policy_network(
  obs_size: int, action_size: int, hidden: Sequence[int], init_log_std: float = -0.5
) -> Network:
  """Gaussian policy network: apply(params, normalised_obs) -> (mean, log_std)."""
  module = _GaussianHead(tuple(hidden), action_size, init_log_std)
  return Network(lambda key: module.init(key, jnp.zeros((obs_size,))), module.apply)


def make_value_network(obs_size: int, hidden: Sequence[int]) -> Network:
  """Value network: apply(params, normalised_obs) -> scalar."""
  module = MLP(tuple(hidden), 1, nn.tanh)
  return Network(
    lambda key: module.init(key, jnp.zeros((obs_size,))),
    lambda params, obs: module.apply(params, obs)[..., 0],
  )


class _Dynamics(nn.Module):
  """Gaussian over (Δobs/σ_obs, reward) with bounded log-std (PETS, Chua et al. 2018)."""

  hidden: Sequence[int]
  out: int

  @nn.compact
  def __call__(self, x):
    h = MLP(self.hidden, 2 * self.out)(x)
    mean, raw_log_std = jnp.split(h, 2, axis=-1)
    max_ls = self.param("max_log_std", nn.initializers.constant(0.5), (self.out,))
    min_ls = self.param("min_log_std", nn.initializers.constant(-10.0), (self.out,))
    # Soft clamp into [min_ls, max_ls]; both bounds are learned.
    log_std = max_ls - nn.softplus(max_ls - raw_log_std)
    log_std = min_ls + nn.softplus(log_std - min_ls)
    return mean, log_std


def make_model_network(
  obs_size: int, action_size: int, hidden: Sequence[int], ensemble_size: int = 1
) -> Network:
  """Ensemble dynamics network: apply(params, norm_obs, env_action) -> (mean, log_std).

  Params carry a leading ensemble axis [E, ...]; outputs are [E, obs_size + 1]
  (normalised Δobs, then reward).
  """
  module = _Dynamics(tuple(hidden), obs_size + 1)
  dummy = jnp.zeros((obs_size + action_size,))

  def init(key):
    return jax.vmap(lambda k: module.init(k, dummy))(jax.random.split(key, ensemble_size))

  def apply(params, obs, action):
    x = jnp.concatenate([obs, action], axis=-1)
    return jax.vmap(module.apply, in_axes=(0, None))(params, x)

  return Network(init, apply)


# --------------------------------------------------------------------------- pure functions
ACTION_MODES = ("clip", "tanh")


def env_action(raw_action: jax.Array, mode: str) -> jax.Array:
  """Maps the Gaussian sample to the env's [-1, 1] box. The policy's log-prob is that of the
  raw sample; the squashing Jacobian does not depend on θ, so policy gradients and PPO ratios
  are unchanged by it."""
  return jnp.tanh(raw_action) if mode == "tanh" else jnp.clip(raw_action, -1.0, 1.0)


def make_policy(net: Network, stats: RunningStats) -> Policy:
  """Gaussian policy over the raw (pre-squash) action, on normalised observations."""

  def sample(params, obs, key):
    return gaussian_sample(*net.apply(params, normalize(stats, obs)), key)

  def log_prob(params, obs, action):
    mean, log_std = net.apply(params, normalize(stats, obs))
    return -gaussian_nll(mean, log_std, action)

  return Policy(sample, log_prob)


def make_value_fn(net: Network, stats: RunningStats) -> Callable[[Params, jax.Array], jax.Array]:
  return lambda params, obs: net.apply(params, normalize(stats, obs))


def make_model(
  net: Network,
  stats: RunningStats,
  termination_fn: Callable[[jax.Array], jax.Array],
  action_mode: str,
) -> Model:
  """Model over raw observations: s' = s + σ_obs · (μ + σ ε)[:-1], r = (μ + σ ε)[-1].

  With an ensemble, each transition uses a uniformly drawn member, so the model's transition
  density is the mixture (1/E) Σ_e N(·; μ_e, σ_e); `log_prob` returns its log, up to the
  constant −Σ log σ_obs of the change of variables (irrelevant to gradients).
  Termination is the env's known function of the next observation. (MBPO samples from its
  elites only by passing their parameters.)
  """
  obs_std = std(stats)

  def predict(params, obs, action):
    return net.apply(params, normalize(stats, obs), env_action(action, action_mode))

  def sample(params, obs, action, key):
    mkey, nkey = jax.random.split(key)
    mean, log_std = predict(params, obs, action)
    member = jax.random.randint(mkey, (), 0, mean.shape[0])
    z = mean[member] + jnp.exp(log_std[member]) * jax.random.normal(nkey, mean.shape[1:])
    next_obs = obs + obs_std * z[:-1]
    return next_obs, z[-1], termination_fn(next_obs)

  def log_prob(params, obs, action, next_obs, reward):
    mean, log_std = predict(params, obs, action)
    target = jnp.concatenate([(next_obs - obs) / obs_std, reward[None]])
    log_p = -gaussian_nll(mean, log_std, jnp.broadcast_to(target, mean.shape))
    return jax.nn.logsumexp(log_p) - jnp.log(mean.shape[0])

  return Model(sample, log_prob)
