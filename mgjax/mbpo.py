"""MBPO (Janner et al. 2019, arXiv:1906.08253) in the mgjax framework: `--algo mbpo`.

Before the first iteration `exploration_steps` uniform-random env steps fill the real
buffer. One iteration covers num_envs·rollout_length real env steps (MBPO: 1·250):
  1. `fit_ensemble`: the probabilistic ensemble is trained by NLL on the real buffer, one
     epoch at a time, until no member improves its held-out NLL by 1% for
     `model_patience` epochs; each member keeps its best snapshot and the `elites` best
     members generate rollouts.
  2. `branched_rollouts`: `rollout_batch` rollouts of length k(epoch) (the schedule) start
     from real states, act with the current actor and step a random elite per transition;
     they go to the model buffer, of which only the last `model_retain_epochs` epochs are
     sampled.
  3. `collect_and_update`: each real env step is stored and followed by
     updates_per_step·num_envs SAC updates on minibatches that mix `real_ratio` real rows
     with model rows.
`--algo mg-sac` is the same loop with the MG model objective put on SAC's actor: after each
`fit_ensemble`, `fit_model_mg` takes `mg_steps` steps of
    L(φ) = −S-surrogate(ĝ_M(φ), g_R) + mle_weight · NLL(φ),
where g_R is the actor-loss gradient on real buffer states and ĝ_M the same gradient on the
states of `mg_horizon`-step elite rollouts from them (`mgjax.actor_model_gradient_loss`).
Both algorithms log cos(ĝ_M, g_R) of the fitted ensemble each round (`model_grad_cosine`).
Like `train.make_trainer`, `make_trainer(config)` returns pure, vmappable init/chunk
functions, so seeds run as one jitted program.
"""
import dataclasses
import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
from flax import struct
from jax.experimental import io_callback

from mgjax import envs, model_gradient, networks, sac
from mgjax.buffer import (ReplayBuffer, buffer_add, buffer_add_masked, buffer_init,
                          buffer_sample, buffer_sample_recent)
from mgjax.config import Config, validate
from mgjax.networks import RunningStats
from mgjax.train import (Trainer, adam, combine_model_grads, init_hparams, make_env,
                         mean_episode_return, set_learning_rate)
from mgjax.types import Params, Policy, Transition

HOLDOUT_EVERY = 5      # every 5th buffer slot is held out: MBPO's 20% split
HOLDOUT_BATCH = 5000   # held-out rows scored per epoch (MBPO caps its holdout at 5000)
EPOCH_LENGTH = 1000    # env steps per MBPO epoch (the unit of the rollout schedule)
_ROW_KEYS = ("obs", "action", "reward", "next_obs", "termination")


@struct.dataclass
class MBPOState:
  """Everything that changes during an mbpo run (one seed)."""
  sac: sac.SACParams
  sac_opt: sac.SACOptState
  model_params: Params
  model_opt: optax.OptState
  elites: jax.Array            # [elites] member indices used for rollouts
  obs_stats: RunningStats      # normalisation of the model's inputs and outputs
  env_state: Any
  buffer: ReplayBuffer         # real transitions
  model_buffer: ReplayBuffer   # model transitions
  key: jax.Array
  iteration: jax.Array
  env_steps: jax.Array
  hparams: dict[str, jax.Array]  # the config's SWEEPABLE settings, as data


@dataclasses.dataclass(frozen=True)
class MBPOComponents:
  config: Config
  env: envs.EnvInfo
  train_env: envs.TrainingEnv
  actor_net: networks.Network
  q_net: networks.Network
  model_net: networks.Network
  sac_optimizers: sac.SACOptimizers
  model_optimizer: optax.GradientTransformation

  @property
  def target_entropy(self) -> float:
    return self.config.target_entropy or sac.default_target_entropy(self.env.action_size)

  @property
  def model_buffer_capacity(self) -> int:
    c = self.config
    return c.rollout_batch * c.rollout_schedule[3] * _rounds_per_epoch(c) * c.model_retain_epochs

  def model(self, stats: RunningStats):
    # SAC actions are already in [-1, 1]: "clip" leaves them unchanged.
    return networks.make_model(self.model_net, stats, self.env.termination_fn, "clip")

  def policy(self) -> Policy:
    """The actor as an `mgjax.Policy` over tanh-squashed actions (reparameterised sample)."""
    def sample(params, obs, key):
      return sac.tanh_gaussian_sample(*self.actor_net.apply(params, obs), key)[0]

    def log_prob(params, obs, action):
      u = jnp.arctanh(jnp.clip(action, -1.0 + 1e-6, 1.0 - 1e-6))
      return sac.tanh_gaussian_log_prob(*self.actor_net.apply(params, obs), u)

    return Policy(sample, log_prob)


def _rounds_per_epoch(c: Config) -> int:
  return max(1, round(EPOCH_LENGTH / c.batch_steps))


def make_components(config: Config, env_info: envs.EnvInfo | None = None) -> MBPOComponents:
  c = validate(config)
  info = env_info or make_env(c)
  return MBPOComponents(
      config=c, env=info, train_env=envs.TrainingEnv(info, c.num_envs),
      actor_net=sac.make_actor_network(info.obs_size, info.action_size, c.sac_hidden),
      q_net=sac.make_q_network(info.obs_size, info.action_size, c.sac_hidden),
      model_net=networks.make_model_network(info.obs_size, info.action_size, c.model_hidden,
                                            c.ensemble_size),
      sac_optimizers=sac.SACOptimizers(*(adam(c.sac_learning_rate) for _ in range(3))),
      model_optimizer=adam(c.model_learning_rate))


def rollout_length(epoch: jax.Array, schedule: tuple[int, ...]) -> jax.Array:
  """MBPO's linear schedule: min_len before epoch a, max_len after b, floor in between."""
  a, b, lo, hi = schedule
  frac = jnp.clip((epoch - a) / (b - a), 0.0, 1.0)
  return (lo + frac * (hi - lo)).astype(jnp.int32)


def _rows(obs, action, reward, next_obs, termination) -> dict[str, jax.Array]:
  return dict(zip(_ROW_KEYS, (obs, action, reward, next_obs, termination)))


# ------------------------------------------------------------------------------ stages
def init_state(comp: MBPOComponents, key: jax.Array, hparams: dict | None = None) -> MBPOState:
  """Fresh parameters and buffers, then `exploration_steps` uniform-random env steps;
  `hparams` overrides some of the config's SWEEPABLE settings."""
  c, info = comp.config, comp.env
  hp = init_hparams(c, hparams)
  ks, km, ke, kx, key = jax.random.split(key, 5)
  params = sac.init_params(comp.actor_net, comp.q_net, ks)
  model_params = comp.model_net.init(km)
  zo, za, z = jnp.zeros(info.obs_size), jnp.zeros(info.action_size), jnp.zeros(())
  example = _rows(zo, za, z, zo, z)
  sac_opt = jax.tree.map(lambda o: set_learning_rate(o, hp["sac_learning_rate"]),
                         sac.init_opt_state(comp.sac_optimizers, params),
                         is_leaf=lambda x: hasattr(x, "hyperparams"))
  model_opt = set_learning_rate(comp.model_optimizer.init(model_params),
                                hp["model_learning_rate"])
  state = MBPOState(
      sac=params, sac_opt=sac_opt, model_params=model_params, model_opt=model_opt,
      elites=jnp.arange(c.elites), obs_stats=networks.init_stats(info.obs_size),
      env_state=comp.train_env.reset(ke), buffer=buffer_init(example, c.buffer_size),
      model_buffer=buffer_init(example, comp.model_buffer_capacity), key=key,
      iteration=jnp.zeros((), jnp.int32), env_steps=jnp.zeros((), jnp.int32), hparams=hp)

  def explore(s, k):
    action = jax.random.uniform(k, (c.num_envs, info.action_size), minval=-1.0, maxval=1.0)
    return _env_step(comp, s, action), s.env_state.obs

  state, obs = jax.lax.scan(explore, state, jax.random.split(kx, c.exploration_steps // c.num_envs))
  return state.replace(obs_stats=networks.update_stats(state.obs_stats, obs))


def _env_step(comp: MBPOComponents, state: MBPOState, action: jax.Array) -> MBPOState:
  """One step of the training envs; the transition goes to the real buffer."""
  nxt = comp.train_env.step(state.env_state, action)
  rows = _rows(state.env_state.obs, action, nxt.reward, nxt.info["final_obs"],
               nxt.info["termination"])
  return state.replace(env_state=nxt, buffer=buffer_add(state.buffer, rows),
                       env_steps=state.env_steps + comp.config.num_envs)


def _split_index(j: jax.Array, held_out: bool) -> jax.Array:
  """j-th held-out slot (5j) or j-th training slot (the others, in order)."""
  if held_out:
    return HOLDOUT_EVERY * j
  per = HOLDOUT_EVERY - 1
  return (j // per) * HOLDOUT_EVERY + j % per + 1


def _ensemble_loss(comp: MBPOComponents, stats: RunningStats, params: Params, rows) -> jax.Array:
  """Σ_e NLL_e on member e's own minibatch (rows [E, B, ...]) + the PETS bound penalty."""
  def one(p, r):
    p = jax.tree.map(lambda x: x[None], p)  # a one-member ensemble
    return networks.model_nll(comp.model_net, stats, p, r["obs"], r["action"], r["next_obs"],
                              r["reward"], "clip")

  nll = jax.vmap(one)(params, rows)
  return jnp.sum(nll) + 0.01 * networks.log_std_bound_penalty(params) / rows["obs"].shape[1]


def fit_ensemble(comp: MBPOComponents, state: MBPOState, key: jax.Array):
  """Trains every member on the training split until held-out NLL stops improving.

  An epoch is `model_epoch_steps` minibatch steps (0: one pass over the training split),
  each member drawing its own minibatch (the bootstrap of an ensemble). After each epoch a
  member whose held-out NLL improved by more than 1% of its best keeps a snapshot; training
  stops after `model_patience` epochs in which none did, or after `model_max_epochs`. Every
  member ends at its best snapshot, and the `elites` members of lowest held-out NLL are
  chosen. Returns (state, {"model_nll": mean held-out NLL of the elites, "model_epochs"}).
  """
  c, E, B = comp.config, comp.config.ensemble_size, comp.config.mle_batch
  data, size = state.buffer.data, state.buffer.size
  n_hold = (size + HOLDOUT_EVERY - 1) // HOLDOUT_EVERY
  n_train = jnp.maximum(size - n_hold, 1)
  hkey, key = jax.random.split(key)
  hold_idx = _split_index(jax.random.randint(hkey, (HOLDOUT_BATCH,), 0, n_hold), True)
  hold = jax.tree.map(lambda d: d[hold_idx], data)
  steps = c.model_epoch_steps or (n_train + B - 1) // B
  stats = state.obs_stats

  def held_out(params):
    return networks.member_nll(comp.model_net, stats, params, hold["obs"], hold["action"],
                               hold["next_obs"], hold["reward"], "clip")  # [E]

  def train_step(t, carry):
    params, opt, k = carry
    k, sk = jax.random.split(k)
    rows = _member_minibatches(comp, state, sk)
    grads = jax.grad(_ensemble_loss, argnums=2)(comp, stats, params, rows)
    updates, opt = comp.model_optimizer.update(grads, opt, params)
    return optax.apply_updates(params, updates), opt, k

  def epoch(carry):
    params, opt, best, best_loss, since, n, k = carry
    k, ek = jax.random.split(k)
    params, opt, _ = jax.lax.fori_loop(0, steps, train_step, (params, opt, ek))
    loss = held_out(params)
    better = (best_loss - loss) / jnp.abs(best_loss) > 0.01
    pick = lambda new, old: jnp.where(better.reshape((E,) + (1,) * (new.ndim - 1)), new, old)
    best = jax.tree.map(pick, params, best)
    best_loss = jnp.where(better, loss, best_loss)
    since = jnp.where(jnp.any(better), 0, since + 1)
    return params, opt, best, best_loss, since, n + 1, k

  def keep_going(carry):
    *_, since, n, _ = carry
    return (since < c.model_patience) & (n < c.model_max_epochs)

  p0 = state.model_params
  carry = (p0, state.model_opt, p0, held_out(p0), jnp.zeros((), jnp.int32),
           jnp.zeros((), jnp.int32), key)
  _, opt, best, best_loss, _, epochs, _ = jax.lax.while_loop(keep_going, epoch, carry)
  elites = jnp.argsort(best_loss)[:c.elites]
  state = state.replace(model_params=best, model_opt=opt, elites=elites)
  return state, {"model_nll": jnp.mean(best_loss[elites]), "model_epochs": epochs}


def _member_minibatches(comp: MBPOComponents, state: MBPOState, key: jax.Array):
  """One minibatch [E, B] of the training split per member (the bootstrap of an ensemble)."""
  c = comp.config
  n_hold = (state.buffer.size + HOLDOUT_EVERY - 1) // HOLDOUT_EVERY
  n_train = jnp.maximum(state.buffer.size - n_hold, 1)
  idx = _split_index(
      jax.random.randint(key, (c.ensemble_size, c.mle_batch), 0, n_train), False)
  return jax.tree.map(lambda d: d[idx], state.buffer.data)


def _actor_loss(comp: MBPOComponents, state: MBPOState):
  """SAC's per-state actor objective ℓ(θ, s, key) with the current critics and α."""
  objective = functools.partial(sac.actor_objective, q_params=state.sac.q,
                                log_alpha=state.sac.log_alpha, q_fn=comp.q_net.apply,
                                actor_fn=comp.actor_net.apply)
  return lambda params, obs, key: objective(params, obs, key)[0]


def _real_actor_gradient(comp: MBPOComponents, state: MBPOState, sample_key: jax.Array,
                         grad_key: jax.Array):
  """mg_rollouts·mg_horizon real buffer states and g_R, the actor-loss gradient on them."""
  c = comp.config
  real = buffer_sample(state.buffer, sample_key, c.mg_rollouts * c.mg_horizon)["obs"]
  grad = model_gradient.actor_gradient(state.sac.actor, actor_loss=_actor_loss(comp, state),
                                       obs=real, key=grad_key)
  return real, grad


def mg_loss(comp: MBPOComponents, state: MBPOState, params: Params, key: jax.Array):
  """`actor_model_gradient_loss` of ensemble params φ (through its elites) -> (loss, metrics),
  metrics["real_grad"] = g_R.

  mg_rollouts·mg_horizon real buffer states give g_R, the SAC actor-loss gradient with the
  current critics and α; the first mg_rollouts of them start the mg_horizon-step rollouts
  (a uniformly drawn elite per transition, as in `branched_rollouts`), so both sides average
  the same number of states.
  """
  c = comp.config
  skey, gkey, mkey = jax.random.split(key, 3)
  actor_loss = _actor_loss(comp, state)
  real, real_grad = _real_actor_gradient(comp, state, skey, gkey)
  elite_params = jax.tree.map(lambda p: p[state.elites], params)  # φ reaches the elites
  loss, metrics = model_gradient.actor_model_gradient_loss(
      elite_params, policy_params=state.sac.actor, real_grad=real_grad,
      start_obs=real[:c.mg_rollouts], key=mkey, policy=comp.policy(),
      model=comp.model(state.obs_stats), actor_loss=actor_loss, horizon=c.mg_horizon,
      similarity=c.similarity, estimator=c.estimator)
  return loss, {**metrics, "real_grad": real_grad}


def alignment_ceiling(comp: MBPOComponents, state: MBPOState, key: jax.Array) -> dict:
  """cos(ĝ_M, g_R) (`mg_loss`'s) next to its noise ceiling cos(g_R', g_R), g_R' the
  actor-loss gradient on as many other real buffer states, drawn independently: the
  alignment a model would score whose states were fresh real data."""
  key, skey, gkey = jax.random.split(key, 3)
  _, metrics = mg_loss(comp, state, state.model_params, key)
  _, g_other = _real_actor_gradient(comp, state, skey, gkey)
  return {"real_vs_real": model_gradient.similarity_value(g_other, metrics["real_grad"],
                                                          "cosine"),
          "model_vs_real": metrics["cosine"]}


def fit_model_mg(comp: MBPOComponents, state: MBPOState, key: jax.Array):
  """mg-sac: mg_steps steps of L(φ) = −S-surrogate + mle_weight · Σ_e NLL_e on the whole
  ensemble (the MG term reaches the elites; the NLL, on each member's own minibatch, all of
  them). As in `train.fit_model_mg`, the MG term's gradient is clipped to a global norm of
  mg_max_grad_norm before the terms are added. Returns (state, (mean loss, mean MG norm))."""
  def step(s, k):
    mkey, bkey = jax.random.split(k)
    (mg, _), g_mg = jax.value_and_grad(mg_loss, argnums=2, has_aux=True)(
        comp, s, s.model_params, mkey)
    nll, g_nll = jax.value_and_grad(_ensemble_loss, argnums=2)(
        comp, s.obs_stats, s.model_params, _member_minibatches(comp, s, bkey))
    grads, mg_norm = combine_model_grads(g_mg, g_nll, s.hparams)
    updates, opt = comp.model_optimizer.update(grads, s.model_opt, s.model_params)
    s = s.replace(model_params=optax.apply_updates(s.model_params, updates), model_opt=opt)
    return s, (mg + s.hparams["mle_weight"] * nll, mg_norm)

  state, (loss, mg_norm) = jax.lax.scan(step, state,
                                        jax.random.split(key, comp.config.mg_steps))
  return state, (jnp.mean(loss), jnp.mean(mg_norm))


def _sample_action(comp: MBPOComponents, actor_params: Params, obs: jax.Array,
                   key: jax.Array) -> jax.Array:
  """Stochastic SAC actions for a batch of observations [N, obs_size]."""
  mean, log_std = jax.vmap(comp.actor_net.apply, in_axes=(None, 0))(actor_params, obs)
  keys = jax.random.split(key, obs.shape[0])
  return jax.vmap(sac.tanh_gaussian_sample)(mean, log_std, keys)[0]


def branched_rollouts(comp: MBPOComponents, state: MBPOState, key: jax.Array,
                      length: jax.Array) -> MBPOState:
  """`rollout_batch` model rollouts of `length` steps from real buffer states into the
  model buffer; a rollout stops after its first predicted termination."""
  c = comp.config
  skey, key = jax.random.split(key)
  start = buffer_sample(state.buffer, skey, c.rollout_batch)["obs"]
  # Only the elites are evaluated: member i of `elite_params` is member elites[i].
  elite_params = jax.tree.map(lambda p: p[state.elites], state.model_params)
  model = comp.model(state.obs_stats)

  def step(t, carry):
    obs, alive, buf, k = carry
    k, akey, mkey = jax.random.split(k, 3)
    action = _sample_action(comp, state.sac.actor, obs, akey)
    next_obs, reward, done = jax.vmap(model.sample, in_axes=(None, 0, 0, 0))(
        elite_params, obs, action, jax.random.split(mkey, obs.shape[0]))
    buf = buffer_add_masked(buf, _rows(obs, action, reward, next_obs, done), alive)
    return next_obs, alive & (done == 0), buf, k

  carry = (start, jnp.ones((c.rollout_batch,), bool), state.model_buffer, key)
  _, _, buf, _ = jax.lax.fori_loop(0, length, step, carry)
  return state.replace(model_buffer=buf)


def sac_batch(comp: MBPOComponents, state: MBPOState, key: jax.Array,
              window: jax.Array) -> Transition:
  """A SAC minibatch: int(real_ratio·sac_batch) real rows, the rest recent model rows."""
  c = comp.config
  n_real = int(c.sac_batch * c.real_ratio)
  rkey, mkey = jax.random.split(key)
  real = buffer_sample(state.buffer, rkey, n_real)
  fake = buffer_sample_recent(state.model_buffer, mkey, c.sac_batch - n_real, window)
  rows = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), real, fake)
  return Transition(rows["obs"], rows["action"], rows["reward"], rows["next_obs"],
                    rows["termination"], jnp.zeros_like(rows["reward"]), {})


def sac_step(comp: MBPOComponents, state: MBPOState, key: jax.Array,
             window: jax.Array) -> tuple[MBPOState, dict]:
  """One SAC update on a mixed real/model minibatch (`sac_batch`)."""
  c = comp.config
  bkey, ukey = jax.random.split(key)
  params, opt, metrics = sac.sac_update(
      state.sac, state.sac_opt, sac_batch(comp, state, bkey, window), ukey,
      q_fn=comp.q_net.apply, actor_fn=comp.actor_net.apply, optimizers=comp.sac_optimizers,
      discount=c.discount, tau=state.hparams["tau"], target_entropy=comp.target_entropy)
  return state.replace(sac=params, sac_opt=opt), metrics


def collect_and_update(comp: MBPOComponents, state: MBPOState, key: jax.Array,
                       window: jax.Array):
  """rollout_length steps of the training envs, each followed by
  updates_per_step·num_envs SAC updates -> (state, mean SAC metrics, observed obs)."""
  c = comp.config
  update = functools.partial(sac_step, comp, window=window)

  def env_step(s, k):
    akey, ukey = jax.random.split(k)
    obs = s.env_state.obs
    s = _env_step(comp, s, _sample_action(comp, s.sac.actor, obs, akey))
    s, metrics = jax.lax.scan(update, s, jax.random.split(ukey, c.updates_per_step * c.num_envs))
    return s, (jax.tree.map(jnp.mean, metrics), obs)

  state, (metrics, obs) = jax.lax.scan(env_step, state, jax.random.split(key, c.rollout_length))
  return state, jax.tree.map(jnp.mean, metrics), obs


def evaluate(comp: MBPOComponents, state: MBPOState, key: jax.Array) -> dict[str, jax.Array]:
  """Deterministic actor (tanh of the mean), full episodes in fresh eval envs."""
  def act(obs):
    mean, _ = jax.vmap(comp.actor_net.apply, in_axes=(None, 0))(state.sac.actor, obs)
    return sac.deterministic_action(mean)

  out = envs.evaluate(comp.env, act, key, comp.config.num_eval_envs)
  return {"eval_return": out["return"], "eval_length": out["length"]}


# ------------------------------------------------------------------------------ the loop
def iteration(comp: MBPOComponents, state: MBPOState, progress: Callable | None = None):
  """Model round (fit, elites, mg-sac's MG steps, rollouts) then rollout_length env steps
  with SAC updates."""
  c = comp.config
  key, fkey, rkey, ckey, ekey = jax.random.split(state.key, 5)
  epoch = (state.env_steps - c.initial_steps) // EPOCH_LENGTH
  length = rollout_length(epoch, c.rollout_schedule)
  state, metrics = fit_ensemble(comp, state, fkey)
  # Keys of the MG stage and the diagnostic come from fold_in, leaving mbpo's stream as it was.
  if c.algo == "mg-sac" and c.mg_steps:
    state, (metrics["mg_loss"], metrics["mg_grad_norm"]) = fit_model_mg(
        comp, state, jax.random.fold_in(state.key, 1))
  _, alignment = mg_loss(comp, state, state.model_params, jax.random.fold_in(state.key, 2))
  metrics["model_grad_cosine"] = alignment["cosine"]  # computed, not optimised, for mbpo
  state = branched_rollouts(comp, state.replace(key=key), rkey, length)
  window = c.rollout_batch * length * _rounds_per_epoch(c) * c.model_retain_epochs
  state = state.replace(env_state=comp.train_env.refresh_resets(state.env_state, ekey))
  state, sac_metrics, obs = collect_and_update(comp, state, ckey, window)
  state = state.replace(obs_stats=networks.update_stats(state.obs_stats, obs),
                        iteration=state.iteration + 1)
  metrics.update(sac_metrics, rollout_length=length, env_steps=state.env_steps,
                 train_return=mean_episode_return(state.env_state))
  if progress is not None:
    io_callback(progress, None, state.iteration, ordered=False)
  return state, metrics


def run_chunk(comp: MBPOComponents, state: MBPOState, progress: Callable | None = None):
  """eval_every iterations (a lax.scan) followed by one evaluation."""
  state, iters = jax.lax.scan(lambda s, _: iteration(comp, s, progress), state, None,
                              length=comp.config.eval_every)
  ekey, key = jax.random.split(state.key)
  evals = evaluate(comp, state, ekey)
  evals.update(env_steps=state.env_steps, iteration=state.iteration)
  return state.replace(key=key), {"iterations": iters, "eval": evals}


def make_trainer(config: Config, progress: Callable | None = None,
                 env_info: envs.EnvInfo | None = None):
  """The mbpo `train.Trainer`: pure init(key) and chunk(state), vmappable over seeds."""
  comp = make_components(config, env_info)
  return Trainer(comp, functools.partial(init_state, comp),
                 functools.partial(run_chunk, comp, progress=progress), comp.config.num_chunks)
