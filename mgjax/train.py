"""The collect–fit–optimise loop shared by `mg`, `mle` and `ppo` (DESIGN.md §2).

Each stage is a top-level pure function of (components, state, ...) that a test can call
alone; `iteration` composes them and `make_train(config)` returns a pure `train(key)` whose
iteration loop is a `lax.scan`, so `jax.jit(jax.vmap(train))(keys)` trains many seeds.
"""
import dataclasses
import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import struct
from jax.experimental import io_callback

from mgjax import envs, losses, networks
from mgjax.buffer import (ReplayBuffer, buffer_add, buffer_init, buffer_sample,
                          buffer_sample_recent)
from mgjax.config import SWEEPABLE, Config, validate
from mgjax.model_gradient import model_gradient_loss, policy_gradient, rollout
from mgjax.networks import RunningStats
from mgjax.types import Params, Transition

_NAN = jnp.float32(jnp.nan)


@struct.dataclass
class TrainState:
  """Everything that changes during a run (one seed)."""
  agent_params: Params          # {"policy": θ, "value": ψ}
  agent_opt: optax.OptState
  model_params: Params          # φ (None for ppo)
  model_opt: optax.OptState
  obs_stats: RunningStats       # shared by policy, value and model
  env_state: Any                # brax State of the batched training envs
  buffer: ReplayBuffer | None   # real transitions (None for ppo)
  key: jax.Array
  iteration: jax.Array
  env_steps: jax.Array
  hparams: dict[str, jax.Array]  # the config's SWEEPABLE settings, as data
  real_grad_avg: Params | None = None  # mg: running average of g_R (real_grad_ema)


@dataclasses.dataclass(frozen=True)
class Components:
  """The static parts of a run, built once from the config."""
  config: Config
  env: envs.EnvInfo
  train_env: envs.TrainingEnv
  policy_net: networks.Network
  value_net: networks.Network
  model_net: networks.Network
  agent_optimizer: optax.GradientTransformation
  model_optimizer: optax.GradientTransformation

  def policy(self, stats):
    return networks.make_policy(self.policy_net, stats)

  def value_fn(self, stats):
    return networks.make_value_fn(self.value_net, stats)

  def model(self, stats):
    return networks.make_model(self.model_net, stats, self.env.termination_fn,
                               self.config.action_mode)


def make_env(c: Config) -> envs.EnvInfo:
  """The config's environment (backend and time limit included)."""
  return envs.make_env(c.env, backend=c.backend, episode_length=c.episode_length or None)


def make_components(config: Config, env_info: envs.EnvInfo | None = None) -> Components:
  c = validate(config)
  info = env_info or make_env(c)
  return Components(
      config=c, env=info, train_env=envs.TrainingEnv(info, c.num_envs),
      policy_net=networks.make_policy_network(info.obs_size, info.action_size,
                                              c.policy_hidden, c.init_log_std),
      value_net=networks.make_value_network(info.obs_size, c.value_hidden),
      model_net=networks.make_model_network(info.obs_size, info.action_size, c.model_hidden,
                                            c.ensemble_size),
      agent_optimizer=adam(c.learning_rate, c.max_grad_norm),
      model_optimizer=adam(c.model_learning_rate))


def adam(learning_rate: float, max_grad_norm: float = 0.0) -> optax.GradientTransformation:
  """Adam (after global-norm clipping if max_grad_norm > 0) whose learning rate is a
  hyperparameter in its state, so that it can differ per vmapped run (`set_learning_rate`)."""
  def make(learning_rate):
    opt = optax.adam(learning_rate)
    return optax.chain(optax.clip_by_global_norm(max_grad_norm), opt) if max_grad_norm else opt
  return optax.inject_hyperparams(make)(learning_rate=learning_rate)


def set_learning_rate(opt_state, learning_rate: jax.Array):
  """The state of an `adam` optimizer with its learning rate replaced."""
  lr = jnp.asarray(learning_rate, opt_state.hyperparams["learning_rate"].dtype)
  return opt_state._replace(hyperparams={**opt_state.hyperparams, "learning_rate": lr})


def init_hparams(c: Config, overrides: dict | None = None) -> dict[str, jax.Array]:
  """The config's sweepable settings as float32 scalars, with `overrides` (possibly traced)
  in place of the config's values."""
  names = SWEEPABLE[c.algo]
  unknown = set(overrides or {}) - set(names)
  if unknown:
    raise ValueError(f"{sorted(unknown)}: not sweepable for algo={c.algo!r} "
                     f"(sweepable: {', '.join(names)})")
  return {n: jnp.asarray((overrides or {}).get(n, getattr(c, n)), jnp.float32) for n in names}


# ------------------------------------------------------------------------------ stages
def init_state(comp: Components, key: jax.Array, hparams: dict | None = None) -> TrainState:
  """A fresh state; `hparams` overrides some of the config's SWEEPABLE settings."""
  c, info = comp.config, comp.env
  hp = init_hparams(c, hparams)
  kp, kv, km, ke, key = jax.random.split(key, 5)
  agent = {"policy": comp.policy_net.init(kp), "value": comp.value_net.init(kv)}
  model_params = model_opt = buffer = None
  if c.uses_model:
    model_params = comp.model_net.init(km)
    model_opt = set_learning_rate(comp.model_optimizer.init(model_params),
                                  hp["model_learning_rate"])
    example = {"obs": jnp.zeros(info.obs_size), "action": jnp.zeros(info.action_size),
               "reward": jnp.zeros(()), "next_obs": jnp.zeros(info.obs_size)}
    buffer = buffer_init(example, c.buffer_size)
  agent_opt = set_learning_rate(comp.agent_optimizer.init(agent), hp["learning_rate"])
  real_grad_avg = (jax.tree.map(jnp.zeros_like, agent["policy"]) if c.algo == "mg"
                   else None)
  return TrainState(agent, agent_opt, model_params, model_opt,
                    networks.init_stats(info.obs_size), comp.train_env.reset(ke), buffer, key,
                    jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32), hp, real_grad_avg)


def collect(comp: Components, state: TrainState, key: jax.Array):
  """Runs π_θ for rollout_length steps in the training envs -> (env_state, Transition [T, N])."""
  c = comp.config
  policy = comp.policy(state.obs_stats)
  rkey, key = jax.random.split(key)
  env_state = comp.train_env.refresh_resets(state.env_state, rkey)

  def step(env_state, step_key):
    raw = jax.vmap(policy.sample, in_axes=(None, 0, 0))(
        state.agent_params["policy"], env_state.obs, jax.random.split(step_key, c.num_envs))
    nxt = comp.train_env.step(env_state, networks.env_action(raw, c.action_mode))
    tr = Transition(env_state.obs, raw, nxt.reward, nxt.info["final_obs"],
                    nxt.info["termination"], nxt.info["truncation"], {})
    return nxt, tr

  return jax.lax.scan(step, env_state, jax.random.split(key, c.rollout_length))


def real_advantages(comp: Components, state: TrainState, batch: Transition):
  """GAE on a real batch [T, N] with V_ψ, bootstrapping truncated steps from V(s'_t)."""
  c = comp.config
  value_fn = jax.vmap(comp.value_fn(state.obs_stats), in_axes=(None, 0))
  v = lambda o: jax.vmap(value_fn, in_axes=(None, 0))(state.agent_params["value"], o)
  return losses.gae_from_next_values(
      batch.reward, v(batch.obs), v(batch.next_obs), batch.termination, batch.truncation,
      discount=c.discount, gae_lambda=c.gae_lambda)


def real_policy_gradient(comp: Components, state: TrainState, batch: Transition,
                         advantages: jax.Array) -> Params:
  """g_R = ∇_θ mean[log π(a|s) Â] on the real batch (no advantage normalisation, the
  same convention as ĝ_M inside `model_gradient_loss`)."""
  flat = lambda x: x.reshape((-1,) + x.shape[2:])
  return policy_gradient(state.agent_params["policy"], policy=comp.policy(state.obs_stats),
                         obs=flat(batch.obs), actions=flat(batch.action),
                         advantages=flat(advantages))


def average_real_grad(state: TrainState, real_grad: Params) -> tuple[TrainState, Params]:
  """The MG target: g_R, or with real_grad_ema = β > 0 the bias-corrected running average
  (1 − β) Σ_k β^(t−k) g_R^k / (1 − β^t) over iterations k ≤ t, which trades lag for less
  noise. Called after the iteration counter t (≥ 1) was advanced; β = 0 gives g_R."""
  beta = state.hparams["real_grad_ema"]
  avg = jax.tree.map(lambda m, g: beta * m + (1.0 - beta) * g, state.real_grad_avg, real_grad)
  correction = 1.0 - beta ** state.iteration.astype(jnp.float32)
  return state.replace(real_grad_avg=avg), jax.tree.map(lambda m: m / correction, avg)


def batch_rows(batch: Transition) -> dict[str, jax.Array]:
  """A real batch [T, N] as the replay buffer's flat rows [T·N] (obs, action, reward,
  next_obs)."""
  flat = lambda x: x.reshape((-1,) + x.shape[2:])
  return {"obs": flat(batch.obs), "action": flat(batch.action),
          "reward": flat(batch.reward), "next_obs": flat(batch.next_obs)}


def _nll_loss(comp: Components, state: TrainState, params: Params, rows) -> jax.Array:
  nll = networks.model_nll(comp.model_net, state.obs_stats, params, rows["obs"],
                           rows["action"], rows["next_obs"], rows["reward"],
                           comp.config.action_mode)
  return nll + 0.01 * networks.log_std_bound_penalty(params) / rows["obs"].shape[0]


def _apply_model_grads(comp: Components, state: TrainState, grads: Params) -> TrainState:
  updates, opt = comp.model_optimizer.update(grads, state.model_opt, state.model_params)
  return state.replace(model_params=optax.apply_updates(state.model_params, updates),
                       model_opt=opt)


def fit_model_mle(comp: Components, state: TrainState, key: jax.Array):
  """K_mle steps of Gaussian NLL on minibatches of the replay buffer."""
  c = comp.config

  def step(s, k):
    rows = buffer_sample(s.buffer, k, c.mle_batch)
    nll, grads = jax.value_and_grad(_nll_loss, argnums=2)(comp, s, s.model_params, rows)
    return _apply_model_grads(comp, s, grads), nll

  state, nll = jax.lax.scan(step, state, jax.random.split(key, c.mle_steps))
  return state, (jnp.mean(nll) if c.mle_steps else _NAN)


def mg_start_obs(c: Config, buffer, key: jax.Array) -> jax.Array:
  """mg_rollouts start states for the MG rollouts: uniform over the latest real batch, the
  on-policy states g_R is computed on (`mg_start="batch"`, the default), or over the whole
  buffer ("buffer"). Called after that batch was appended, so it is the buffer's newest
  batch_steps rows."""
  if c.mg_start == "batch":
    return buffer_sample_recent(buffer, key, c.mg_rollouts, c.batch_steps)["obs"]
  return buffer_sample(buffer, key, c.mg_rollouts)["obs"]


def mg_loss(comp: Components, state: TrainState, params: Params, key: jax.Array,
            real_grad: Params):
  """`model_gradient_loss` of model params φ against g_R = real_grad, on MG rollouts from
  `mg_start_obs` -> (loss, metrics); metrics["model_grad"] is ĝ_M."""
  c = comp.config
  skey, rkey = jax.random.split(key)
  start = mg_start_obs(c, state.buffer, skey)
  return model_gradient_loss(
      params, policy_params=state.agent_params["policy"],
      value_params=state.agent_params["value"], real_grad=real_grad, start_obs=start,
      key=rkey, policy=comp.policy(state.obs_stats), model=comp.model(state.obs_stats),
      value_fn=comp.value_fn(state.obs_stats), horizon=c.mg_horizon, discount=c.discount,
      gae_lambda=c.gae_lambda, similarity=c.similarity, estimator=c.estimator)


def combine_model_grads(g_mg: Params, g_nll: Params, hparams: dict) -> tuple[Params, jax.Array]:
  """scale · g_mg + mle_weight · g_nll, scale clipping g_mg to a global norm of
  mg_max_grad_norm (0: no clipping) -> (gradient, |g_mg|)."""
  mg_norm = optax.tree.norm(g_mg)
  max_norm = hparams["mg_max_grad_norm"]
  scale = jnp.where(max_norm > 0, jnp.minimum(1.0, max_norm / (mg_norm + 1e-8)), 1.0)
  grads = jax.tree.map(lambda a, b: scale * a + hparams["mle_weight"] * b, g_mg, g_nll)
  return grads, mg_norm


def fit_model_mg(comp: Components, state: TrainState, key: jax.Array, real_grad: Params):
  """K_mg steps of L(φ) = −S-surrogate(ĝ_M(φ), g_R) + λ_mle · NLL(φ; buffer minibatch).

  The surrogate's gradient is clipped to a global norm of mg_max_grad_norm before the two
  terms are added: score-function gradients scale with 1/σ of a sharp model and can be
  orders of magnitude larger than the NLL gradient, which would let noise swamp the fit.
  """
  c = comp.config

  def step(s, k):
    mkey, bkey = jax.random.split(k)
    (mg, metrics), g_mg = jax.value_and_grad(mg_loss, argnums=2, has_aux=True)(
        comp, s, s.model_params, mkey, real_grad)
    nll, g_nll = jax.value_and_grad(_nll_loss, argnums=2)(
        comp, s, s.model_params, buffer_sample(s.buffer, bkey, c.mle_batch))
    grads, mg_norm = combine_model_grads(g_mg, g_nll, s.hparams)
    return _apply_model_grads(comp, s, grads), (mg + s.hparams["mle_weight"] * nll, mg_norm)

  state, (loss, mg_norm) = jax.lax.scan(step, state, jax.random.split(key, c.mg_steps))
  if not c.mg_steps:
    return state, (_NAN, _NAN)
  return state, (jnp.mean(loss), jnp.mean(mg_norm))


def model_alignment(comp: Components, state: TrainState, key: jax.Array,
                    real_grad: Params) -> jax.Array:
  """Diagnostic cos(ĝ_M, g_R) of the current model on fresh start states (not optimised)."""
  _, metrics = mg_loss(comp, state, state.model_params, key, real_grad)
  return metrics["cosine"]


class PPOBatch(NamedTuple):
  """Flat samples for PPO epochs; `weight` masks steps after predicted termination."""
  obs: jax.Array
  action: jax.Array
  advantage: jax.Array
  target: jax.Array
  weight: jax.Array


def model_ppo_batch(comp: Components, state: TrainState, key: jax.Array) -> PPOBatch:
  """Branched rollouts of horizon H in the model from buffer states, with GAE that
  bootstraps V(s_H) and stops at predicted termination."""
  c = comp.config
  skey, rkey = jax.random.split(key)
  start = buffer_sample(state.buffer, skey, c.model_rollouts)["obs"]
  obs, actions, rewards, dones, alive = rollout(
      state.model_params, state.agent_params["policy"], start, rkey,
      policy=comp.policy(state.obs_stats), model=comp.model(state.obs_stats),
      horizon=c.model_horizon)
  value_fn = comp.value_fn(state.obs_stats)
  values = jax.vmap(jax.vmap(value_fn, in_axes=(None, 0)), in_axes=(None, 0))(
      state.agent_params["value"], obs)
  adv, targets = losses.gae(rewards, values[:-1], values[-1], dones, discount=c.discount,
                            gae_lambda=c.gae_lambda)
  flat = lambda x: x.reshape((-1,) + x.shape[2:])
  return jax.lax.stop_gradient(
      PPOBatch(flat(obs[:-1]), flat(actions), flat(adv), flat(targets), flat(alive)))


def real_ppo_batch(batch: Transition, advantages: jax.Array, targets: jax.Array) -> PPOBatch:
  flat = lambda x: x.reshape((-1,) + x.shape[2:])
  return PPOBatch(flat(batch.obs), flat(batch.action), flat(advantages), flat(targets),
                  jnp.ones_like(flat(advantages)))


def ppo_loss(comp: Components, stats: RunningStats, hparams: dict, params: Params,
             mb: PPOBatch, old_log_prob: jax.Array):
  """Clipped surrogate + value_coef · value loss − entropy_coef · entropy, with advantages
  normalised over the (weighted) minibatch; coefficients from `hparams`."""
  policy, value_fn = comp.policy(stats), comp.value_fn(stats)
  log_prob = jax.vmap(policy.log_prob, in_axes=(None, 0, 0))(params["policy"], mb.obs, mb.action)
  mean = losses.weighted_mean(mb.advantage, mb.weight)
  var = losses.weighted_mean(jnp.square(mb.advantage - mean), mb.weight)
  adv = (mb.advantage - mean) / (jnp.sqrt(var) + 1e-8)
  pl = losses.ppo_policy_loss(log_prob, old_log_prob, adv, hparams["clip_eps"], mb.weight)
  values = jax.vmap(value_fn, in_axes=(None, 0))(params["value"], mb.obs)
  vl = losses.value_loss(values, mb.target, mb.weight)
  _, log_std = comp.policy_net.apply(params["policy"], jnp.zeros(comp.env.obs_size))
  entropy = losses.gaussian_entropy(log_std)  # state-independent log-std
  total = pl + hparams["value_coef"] * vl - hparams["entropy_coef"] * entropy
  return total, (pl, vl, entropy)


def ppo_update(comp: Components, state: TrainState, batch: PPOBatch, key: jax.Array):
  """PPO epochs over shuffled minibatches; the behaviour log-probs are those of the
  current policy (the data is on-policy for it)."""
  c = comp.config
  policy = comp.policy(state.obs_stats)
  old_log_prob = jax.lax.stop_gradient(jax.vmap(policy.log_prob, in_axes=(None, 0, 0))(
      state.agent_params["policy"], batch.obs, batch.action))
  n = batch.advantage.shape[0]
  loss_fn = functools.partial(ppo_loss, comp, state.obs_stats, state.hparams)

  def minibatch_step(carry, idx):
    params, opt = carry
    mb = jax.tree.map(lambda x: x[idx], batch)
    grads, aux = jax.grad(loss_fn, has_aux=True)(params, mb, old_log_prob[idx])
    updates, opt = comp.agent_optimizer.update(grads, opt, params)
    return (optax.apply_updates(params, updates), opt), aux

  def epoch(carry, k):
    idx = jax.random.permutation(k, n).reshape(c.num_minibatches, -1)
    return jax.lax.scan(minibatch_step, carry, idx)

  (params, opt), (pl, vl, ent) = jax.lax.scan(
      epoch, (state.agent_params, state.agent_opt), jax.random.split(key, c.ppo_epochs))
  return state.replace(agent_params=params, agent_opt=opt), (pl.mean(), vl.mean(), ent.mean())


def evaluate(comp: Components, state: TrainState, key: jax.Array) -> dict[str, jax.Array]:
  """Deterministic policy (mean action), full episodes in fresh eval envs."""
  c = comp.config
  stats, params = state.obs_stats, state.agent_params["policy"]

  def act(obs):
    mean, _ = jax.vmap(comp.policy_net.apply, in_axes=(None, 0))(
        params, networks.normalize(stats, obs))
    return networks.env_action(mean, c.action_mode)

  out = envs.evaluate(comp.env, act, key, c.num_eval_envs)
  return {"eval_return": out["return"], "eval_length": out["length"]}


# ------------------------------------------------------------------------------ the loop
def iteration(comp: Components, state: TrainState, progress: Callable | None = None):
  """One collect–fit–optimise iteration -> (state, per-iteration metrics)."""
  c = comp.config
  key, ckey, mkey, gkey, akey, pkey = jax.random.split(state.key, 6)
  env_state, batch = collect(comp, state, ckey)
  stats = networks.update_stats(state.obs_stats, batch.obs)
  state = state.replace(env_state=env_state, obs_stats=stats, key=key,
                        iteration=state.iteration + 1,
                        env_steps=state.env_steps + c.batch_steps)
  adv, targets = real_advantages(comp, state, batch)
  metrics = {"train_return": mean_episode_return(env_state)}

  if c.uses_model:
    real_grad = real_policy_gradient(comp, state, batch, adv)
    rows = batch_rows(batch)
    # Held out: the model has not been fitted on this batch yet.
    metrics["model_nll"] = networks.model_nll(
        comp.model_net, stats, state.model_params, rows["obs"], rows["action"],
        rows["next_obs"], rows["reward"], c.action_mode)
    state = state.replace(buffer=buffer_add(state.buffer, rows))
    k1, k2, k3 = jax.random.split(mkey, 3)
    state, metrics["mle_loss"] = fit_model_mle(comp, state, k1)
    if c.algo == "mg":
      state, target = average_real_grad(state, real_grad)
      state, (metrics["mg_loss"], metrics["mg_grad_norm"]) = fit_model_mg(
          comp, state, k2, target)
    metrics["model_grad_cosine"] = model_alignment(comp, state, k3, real_grad)

    def policy_round(s, k):
      bk, uk = jax.random.split(k)
      return ppo_update(comp, s, model_ppo_batch(comp, s, bk), uk)

    state, (pl, vl, ent) = jax.lax.scan(policy_round, state,
                                        jax.random.split(pkey, c.model_updates))
    pl, vl, ent = pl.mean(), vl.mean(), ent.mean()
  else:
    state, (pl, vl, ent) = ppo_update(comp, state, real_ppo_batch(batch, adv, targets), pkey)
  metrics.update(policy_loss=pl, value_loss=vl, entropy=ent, env_steps=state.env_steps)
  for name in ("model_nll", "mle_loss", "mg_loss", "mg_grad_norm", "model_grad_cosine"):
    metrics.setdefault(name, _NAN)
  if progress is not None:  # host-side progress; unordered, so it costs no serialisation.
    io_callback(progress, None, state.iteration, ordered=False)
  return state, metrics


def mean_episode_return(env_state) -> jax.Array:
  """Mean over envs of the last finished episode's return (NaN before any finished)."""
  done = env_state.info["episodes_done"] > 0
  total = jnp.sum(jnp.where(done, env_state.info["last_episode_return"], 0.0))
  return jnp.where(jnp.any(done), total / jnp.maximum(jnp.sum(done), 1), _NAN)


def run_chunk(comp: Components, state: TrainState, progress: Callable | None = None):
  """eval_every iterations (a lax.scan) followed by one evaluation."""
  state, iters = jax.lax.scan(lambda s, _: iteration(comp, s, progress), state, None,
                              length=comp.config.eval_every)
  ekey, key = jax.random.split(state.key)
  evals = evaluate(comp, state.replace(key=key), ekey)
  evals["env_steps"] = state.env_steps
  evals["iteration"] = state.iteration
  return state.replace(key=key), {"iterations": iters, "eval": evals}


class Trainer(NamedTuple):
  """init(key) -> state; chunk(state) -> (state, metrics); both pure and vmappable."""
  components: Components
  init: Callable[[jax.Array], TrainState]
  chunk: Callable[[TrainState], tuple[TrainState, dict]]
  num_chunks: int


def make_trainer(config: Config, progress: Callable | None = None,
                 env_info: envs.EnvInfo | None = None) -> Trainer:
  if config.uses_sac:
    from mgjax import mbpo  # imports this module
    return mbpo.make_trainer(config, progress, env_info)
  comp = make_components(config, env_info)
  return Trainer(comp, functools.partial(init_state, comp),
                 functools.partial(run_chunk, comp, progress=progress), comp.config.num_chunks)


def make_train(config: Config, progress: Callable | None = None,
               env_info: envs.EnvInfo | None = None):
  """Returns a pure `train(key) -> (final_state, metrics)`; metrics leaves are stacked
  [num_chunks, eval_every] per iteration and [num_chunks] per evaluation."""
  trainer = make_trainer(config, progress, env_info)

  def train(key):
    state = trainer.init(key)
    return jax.lax.scan(lambda s, _: trainer.chunk(s), state, None, length=trainer.num_chunks)

  return train
