"""Gaussian negative log-likelihood of dynamics models, per member and with the PETS bound
penalty; the losses every model fit descends."""

import jax
import jax.numpy as jnp

from mgjax.losses import gaussian_nll
from mgjax.nets.networks import Network, env_action
from mgjax.nets.normalization import RunningStats, normalize, std
from mgjax.types import Params

BOUND_PENALTY = 0.01  # weight of the log-std bound penalty (PETS' choice)


def model_nll(
  net: Network,
  stats: RunningStats,
  params: Params,
  obs: jax.Array,
  action: jax.Array,
  next_obs: jax.Array,
  reward: jax.Array,
  action_mode: str,
) -> jax.Array:
  """Per-member Gaussian NLL of a batch, averaged over members and samples (maximum
  likelihood fits each member to the data; the mixture is only used for sampling).

  obs, next_obs: [B, obs_size]; action: [B, A]; reward: [B]. Per-dimension mean NLL.
  """
  return jnp.mean(member_nll(net, stats, params, obs, action, next_obs, reward, action_mode))


def member_nll(
  net: Network,
  stats: RunningStats,
  params: Params,
  obs: jax.Array,
  action: jax.Array,
  next_obs: jax.Array,
  reward: jax.Array,
  action_mode: str,
) -> jax.Array:
  """`model_nll` of each ensemble member on the same batch -> [E]."""
  mean, log_std = jax.vmap(net.apply, in_axes=(None, 0, 0))(
    params, normalize(stats, obs), env_action(action, action_mode)
  )  # [B, E, D]
  delta = (next_obs - obs) / jnp.broadcast_to(std(stats), obs.shape)
  target = jnp.concatenate([delta, reward[:, None]], axis=-1)
  nll = gaussian_nll(mean, log_std, jnp.broadcast_to(target[:, None], mean.shape))  # [B, E]
  return jnp.mean(nll, axis=0) / mean.shape[-1]


def log_std_bound_penalty(params: Params) -> jax.Array:
  """PETS regulariser Σ max_log_std − Σ min_log_std: keeps the learned bounds tight."""
  p = params["params"]
  return jnp.sum(p["max_log_std"]) - jnp.sum(p["min_log_std"])


def nll_loss(
  params: Params, rows, *, net: Network, stats: RunningStats, action_mode: str
) -> jax.Array:
  """The model-fitting loss on one batch of rows [B]: `model_nll` (every member on the
  same rows) + BOUND_PENALTY · `log_std_bound_penalty` / B."""
  nll = model_nll(
    net, stats, params, rows["obs"], rows["action"], rows["next_obs"], rows["reward"], action_mode
  )
  return nll + BOUND_PENALTY * log_std_bound_penalty(params) / rows["obs"].shape[0]


def ensemble_nll_loss(params: Params, rows, *, net: Network, stats: RunningStats) -> jax.Array:
  """Σ_e NLL_e on member e's own minibatch (rows [E, B, ...], the bootstrap of an ensemble)
  + BOUND_PENALTY · `log_std_bound_penalty` / B. Actions are SAC's, already in [-1, 1]."""

  def one(p, r):
    p = jax.tree.map(lambda x: x[None], p)  # a one-member ensemble
    return model_nll(net, stats, p, r["obs"], r["action"], r["next_obs"], r["reward"], "clip")

  nll = jax.vmap(one)(params, rows)
  return jnp.sum(nll) + BOUND_PENALTY * log_std_bound_penalty(params) / rows["obs"].shape[1]
