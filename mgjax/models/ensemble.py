"""Fitting a probabilistic ensemble as MBPO does (Janner et al. 2019, after PETS): every
member on its own minibatches of an 80/20 split of the real buffer, early stopping on the
held-out NLL, and the members of lowest held-out NLL kept as elites."""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from mgjax.buffer import ReplayBuffer
from mgjax.models.fitting import nll_objective
from mgjax.models.nll import ensemble_nll_loss, member_nll
from mgjax.nets.networks import Network
from mgjax.nets.normalization import RunningStats
from mgjax.types import Params

HOLDOUT_EVERY = 5  # every 5th buffer slot is held out: MBPO's 20% split
HOLDOUT_BATCH = 5000  # held-out rows scored per epoch (MBPO caps its holdout at 5000)


class EnsembleFit(NamedTuple):
  """How an ensemble is fitted (from `Config`: ensemble_size, mle_batch, model_epoch_steps,
  model_patience, model_max_epochs, elites, model_fit_budget)."""

  members: int
  batch_size: int
  epoch_steps: int  # gradient steps per epoch; 0 = one pass over the training split
  patience: int  # epochs without a 1% held-out improvement of any member
  max_epochs: int
  elites: int
  budget: int = 0  # > 0: exactly this many gradient steps per fit, no early stopping


def split_index(j: jax.Array, held_out: bool) -> jax.Array:
  """j-th held-out slot (5j) or j-th training slot (the others, in order)."""
  if held_out:
    return HOLDOUT_EVERY * j
  per = HOLDOUT_EVERY - 1
  return (j // per) * HOLDOUT_EVERY + j % per + 1


def _split_sizes(buffer: ReplayBuffer) -> tuple[jax.Array, jax.Array]:
  n_hold = (buffer.size + HOLDOUT_EVERY - 1) // HOLDOUT_EVERY
  return n_hold, jnp.maximum(buffer.size - n_hold, 1)


def member_minibatches(buffer: ReplayBuffer, key: jax.Array, members: int, batch_size: int):
  """One minibatch [E, B] of the training split per member (the bootstrap of an ensemble)."""
  _, n_train = _split_sizes(buffer)
  idx = split_index(jax.random.randint(key, (members, batch_size), 0, n_train), False)
  return jax.tree.map(lambda d: d[idx], buffer.data)


def _held_out_rows(buffer: ReplayBuffer, key: jax.Array, n_hold: jax.Array):
  """HOLDOUT_BATCH rows drawn uniformly from the held-out split (of n_hold slots)."""
  idx = split_index(jax.random.randint(key, (HOLDOUT_BATCH,), 0, n_hold), True)
  return jax.tree.map(lambda d: d[idx], buffer.data)


def _epoch_schedule(fit: EnsembleFit, n_train: jax.Array):
  """-> (gradient steps per epoch, patience, max epochs). Without a budget: `fit.epoch_steps`
  (0: one pass over the n_train training rows), `fit.patience`, `fit.max_epochs`. With one:
  epochs of `fit.epoch_steps` (0: the whole budget), as many as the budget holds, and a
  patience as long, so that no fit stops early."""
  if fit.budget:
    steps = fit.epoch_steps or fit.budget
    return steps, fit.budget // steps, fit.budget // steps
  steps = fit.epoch_steps or (n_train + fit.batch_size - 1) // fit.batch_size
  return steps, fit.patience, fit.max_epochs


def ensemble_nll_objective(
  buffer: ReplayBuffer,
  stats: RunningStats,
  *,
  net: Network,
  optimizer: optax.GradientTransformation,
  fit: EnsembleFit,
):
  """The ensemble's `nll_objective`: each step every member on `fit.batch_size` rows of its
  own from the buffer's training split (`member_minibatches`)."""
  return nll_objective(
    lambda p, k: ensemble_nll_loss(
      p, member_minibatches(buffer, k, fit.members, fit.batch_size), net=net, stats=stats
    ),
    optimizer,
  )


def fit_ensemble(
  params: Params,
  opt_state: optax.OptState,
  buffer: ReplayBuffer,
  stats: RunningStats,
  key: jax.Array,
  *,
  net: Network,
  optimizer: optax.GradientTransformation,
  fit: EnsembleFit,
):
  """Trains every member on the training split until held-out NLL stops improving.

  An epoch is `fit.epoch_steps` minibatch steps (0: one pass over the training split), each
  member drawing its own minibatch. After each epoch a member whose held-out NLL improved by
  more than 1% of its best keeps a snapshot; training stops after `fit.patience` epochs in
  which none did, or after `fit.max_epochs`. Every member ends at its best snapshot, and the
  `fit.elites` members of lowest held-out NLL are chosen.

  With a budget (`fit.budget` > 0) a fit takes exactly `fit.budget` gradient steps, in
  epochs of `fit.epoch_steps` (0: one epoch of the whole budget) with no early stopping, so
  its cost does not grow with the buffer; snapshots and elites are chosen as above.
  Returns (params, opt_state, elites [elites], {"model_nll": mean held-out NLL of the
  elites, "model_epochs"}).
  """
  E = fit.members
  n_hold, n_train = _split_sizes(buffer)
  hkey, key = jax.random.split(key)
  hold = _held_out_rows(buffer, hkey, n_hold)
  steps, patience, max_epochs = _epoch_schedule(fit, n_train)

  def held_out(p):
    return member_nll(
      net, stats, p, hold["obs"], hold["action"], hold["next_obs"], hold["reward"], "clip"
    )  # [E]

  objective = ensemble_nll_objective(buffer, stats, net=net, optimizer=optimizer, fit=fit)

  def train_step(t, carry):
    p, opt, k = carry
    k, sk = jax.random.split(k)
    updates, opt, _ = objective.update(p, opt, sk)
    return optax.apply_updates(p, updates), opt, k

  def epoch(carry):
    p, opt, best, best_loss, since, n, k = carry
    k, ek = jax.random.split(k)
    p, opt, _ = jax.lax.fori_loop(0, steps, train_step, (p, opt, ek))
    loss = held_out(p)
    better = (best_loss - loss) / jnp.abs(best_loss) > 0.01
    pick = lambda new, old: jnp.where(better.reshape((E,) + (1,) * (new.ndim - 1)), new, old)
    best = jax.tree.map(pick, p, best)
    best_loss = jnp.where(better, loss, best_loss)
    since = jnp.where(jnp.any(better), 0, since + 1)
    return p, opt, best, best_loss, since, n + 1, k

  def keep_going(carry):
    *_, since, n, _ = carry
    return (since < patience) & (n < max_epochs)

  carry = (
    params,
    opt_state,
    params,
    held_out(params),
    jnp.zeros((), jnp.int32),
    jnp.zeros((), jnp.int32),
    key,
  )
  _, opt_state, best, best_loss, _, epochs, _ = jax.lax.while_loop(keep_going, epoch, carry)
  elites = jnp.argsort(best_loss)[: fit.elites]
  return best, opt_state, elites, {"model_nll": jnp.mean(best_loss[elites]), "model_epochs": epochs}
