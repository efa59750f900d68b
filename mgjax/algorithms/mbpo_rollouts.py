"""MBPO's model data (Janner et al. 2019): the branch-length schedule, one step of the
elites, the branched rollouts from real states into the model buffer, the SAC minibatch that
mixes real and model rows, and the memory one rollout step takes. `mgjax.algorithms.mbpo`
runs them in its loop; `su` and `state` are its `MBPOSetup` and `MBPOState`."""

import jax
import jax.numpy as jnp

from mgjax import envs
from mgjax.algorithms.sac import as_transition, sample_actions
from mgjax.buffer import ReplayBuffer, buffer_add_masked, buffer_sample, buffer_sample_recent, rows
from mgjax.config import Config
from mgjax.types import Model, Params, Transition


def branch_length(epoch: jax.Array, schedule: tuple[int, ...]) -> jax.Array:
  """MBPO's linear schedule (a, b, lo, hi) of the model branch length k(epoch): lo before
  epoch a, hi after b, floor(lo + (epoch − a)/(b − a) · (hi − lo)) in between."""
  a, b, lo, hi = schedule
  frac = jnp.clip((epoch - a) / (b - a), 0.0, 1.0)
  return (lo + frac * (hi - lo)).astype(jnp.int32)


def elite_step(
  model: Model, elite_params: Params, obs: jax.Array, action: jax.Array, key: jax.Array, draw: str
):
  """One model step of every row of obs [N, D], action [N, A] -> (next_obs, reward, done).

  draw "row" (MBPO): row n steps with elite e_n ~ U{0..E−1}, drawn independently per row;
  every elite is computed for every row and one kept (E× the FLOPs of one member).
  draw "block": the rows are cut into E equal blocks and block e steps with elite e alone,
  one batched contraction over the elites. A caller that permutes the rows at random first
  gives each row a uniform elite with exactly N/E rows per elite (`branched_rollouts`).
  """
  keys = jax.random.split(key, obs.shape[0])
  sample = jax.vmap(model.sample, in_axes=(None, 0, 0, 0))
  if draw == "row":
    return sample(elite_params, obs, action, keys)
  elites = jax.tree.leaves(elite_params)[0].shape[0]
  blocks = lambda x: x.reshape(elites, -1, *x.shape[1:])
  # Each elite as an ensemble of one ([E, 1, ...]): its own draw of a member is that member.
  alone = jax.tree.map(lambda p: p[:, None], elite_params)
  out = jax.vmap(sample)(alone, blocks(obs), blocks(action), blocks(keys))
  return jax.tree.map(lambda y: y.reshape(-1, *y.shape[2:]), out)


def branched_rollouts(su, state, key: jax.Array, length: jax.Array):
  """`rollout_batch` model rollouts of `length` steps from real buffer states into the
  model buffer; a rollout stops after its first predicted termination. Each step's elites
  are drawn as `su.mbpo.elite_draw` says (`elite_step`; "block" deals the rollouts out anew at
  every step, by a random permutation)."""
  skey, key = jax.random.split(key)
  start = buffer_sample(state.buffer, skey, su.mbpo.rollout_batch)["obs"]
  # Only the elites are evaluated: member i of `elite_params` is member elites[i].
  elite_params = jax.tree.map(lambda p: p[state.elites], state.model_params)
  model = su.model(state.obs_stats)

  def step(t, carry):
    obs, alive, buf, k = carry
    k, akey, mkey = jax.random.split(k, 3)
    if su.mbpo.elite_draw == "block":
      pkey, mkey = jax.random.split(mkey)
      order = jax.random.permutation(pkey, obs.shape[0])
      obs, alive = obs[order], alive[order]
    action = sample_actions(su.actor_net, state.sac.actor, obs, akey)
    next_obs, reward, done = elite_step(model, elite_params, obs, action, mkey, su.mbpo.elite_draw)
    buf = buffer_add_masked(buf, rows(obs, action, reward, next_obs, done), alive)
    return next_obs, alive & (done == 0), buf, k

  carry = (start, jnp.ones((su.mbpo.rollout_batch,), bool), state.model_buffer, key)
  _, _, buf, _ = jax.lax.fori_loop(0, length, step, carry)
  return state.replace(model_buffer=buf)


def sac_batch(
  real_buffer: ReplayBuffer,
  model_buffer: ReplayBuffer,
  key: jax.Array,
  window: jax.Array,
  *,
  batch_size: int,
  real_ratio: float,
) -> Transition:
  """A SAC minibatch: int(real_ratio·batch_size) real rows, the rest among the `window`
  newest model rows."""
  n_real = int(batch_size * real_ratio)
  rkey, mkey = jax.random.split(key)
  real = buffer_sample(real_buffer, rkey, n_real)
  fake = buffer_sample_recent(model_buffer, mkey, batch_size - n_real, window)
  return as_transition(jax.tree.map(lambda a, b: jnp.concatenate([a, b]), real, fake))


def rollout_step_bytes(c: Config, obs_size: int, action_size: int) -> int:
  """Bytes of one step of mbpo's branched rollouts, per run: the rows it starts from and
  appends (obs, action, reward, next_obs, termination), the actor's widest layer, and the
  ensemble's widest layer and Gaussian output for every row, of each elite with
  elite_draw="row" (MBPO computes every elite and keeps one).

  A layer counts as its input, its output and the activation of the output; so counted,
  the chunk of a 2-run pointmass mbpo with rollout_batch = 20000 was estimated within 10%
  of what XLA:CPU's compiled program reports (`memory_analysis()`)."""
  n = c.rollout_batch
  m = n * (c.elites if c.elite_draw == "row" else 1)
  row = 2 * obs_size + action_size + 2
  floats = (
    2 * n * row  # the sampled start rows and the new rows
    + 3 * n * max(c.sac_hidden)
    + 3 * m * max(c.model_hidden)
    + 2 * m * (obs_size + 1)
  )  # mean and log-std of (Δobs, reward)
  return 4 * floats  # float32


def transients(c: Config, env: envs.EnvInfo) -> dict[str, tuple[int, tuple[str, ...]]]:
  """The largest temporary arrays per run: one step of the branched rollouts."""
  fields = ("rollout_batch", "model_hidden") + (("elites",) if c.elite_draw == "row" else ())
  return {"rollout step": (rollout_step_bytes(c, env.obs_size, env.action_size), fields)}
