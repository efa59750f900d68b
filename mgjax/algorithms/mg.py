"""`mg`, `mle` and `ppo`: PPO in a learned model whose fit is MG (or NLL alone), or on real data.

One iteration (see docs/design.md, "The loops"):
  1. `collect`: rollout_length steps of π_θ in num_envs training envs;
  2. GAE on the real batch with V_ψ, and g_R = ∇_θ mean[log π(a|s) Â] on it;
  3. (mg, mle) the batch joins the buffer; `fit_mle`: K_mle NLL steps; (mg) `fit_model_mg`:
     K_mg steps of −S(ĝ_M(φ), g_R) + λ_mle · NLL; `model_alignment` logs cos(ĝ_M, g_R), and
     `heldout_alignment` the same before the fit, on a batch the model has not seen;
  4. (mg, mle) model_updates PPO updates on branched model rollouts (`model_ppo_batch`);
     (ppo) one PPO update on the real batch.
Each stage is a top-level function of the parts it uses; `iteration` runs the costly ones
through a stage hook, `stage(name, fn, su, *args)` (as `mbpo.iteration` does), so that a
benchmark can take each apart.
"""

import dataclasses
import functools
import sys
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from mgjax import envs, losses
from mgjax.agents.ppo import PPOBatch, PPOCoefficients, PPONetworks, ppo_update
from mgjax.algorithms.base import (
  Algorithm,
  Spec,
  init_hparams,
  inline,
  loop_algorithm,
  mean_episode_return,
)

# mg_loss and mg_start_obs are part of this module's API (the MG stage).
from mgjax.algorithms.mg_model import (  # noqa: F401
  average_real_grad,
  fit_model_mg,
  mg_loss,
  mg_loss_from,
  mg_start_obs,
  model_alignment,
  model_objective,
)
from mgjax.buffer import ReplayBuffer, buffer_add, buffer_init, buffer_sample, empty_row, rows
from mgjax.config import Config, fail
from mgjax.model_gradient import policy_gradient, rollout
from mgjax.models.fitting import MG_FIT_METRICS, ModelObjective, fit_mle
from mgjax.models.nll import model_nll, nll_loss
from mgjax.nets import networks
from mgjax.nets.normalization import RunningStats, init_stats, normalize, update_stats
from mgjax.optim import adam, set_learning_rate
from mgjax.types import Model, Params, Transition

_NAN = np.float32(np.nan)  # NumPy: importing mgjax must not start a JAX backend
SWEEPABLE = {
  "mg": (
    "learning_rate",
    "model_learning_rate",
    "mle_weight",
    "mg_max_grad_norm",
    "real_grad_ema",
    "clip_eps",
    "value_coef",
    "entropy_coef",
  ),
  "mle": ("learning_rate", "model_learning_rate", "clip_eps", "value_coef", "entropy_coef"),
  "ppo": ("learning_rate", "clip_eps", "value_coef", "entropy_coef"),
}
METRICS = (
  "train_return",
  "model_grad_cosine",
  "model_nll",
  "mle_loss",
  *MG_FIT_METRICS,
  "model_grad_cosine_heldout",
  "policy_loss",
  "value_loss",
  "entropy",
)


# ------------------------------------------------------------------------------ state
@struct.dataclass
class PPOState:
  """Everything that changes during a `ppo` run (one seed)."""

  agent_params: Params  # {"policy": θ, "value": ψ}
  agent_opt: optax.OptState
  obs_stats: RunningStats  # shared by policy and value
  env_state: Any  # brax State of the batched training envs
  key: jax.Array
  iteration: jax.Array
  env_steps: jax.Array
  hparams: dict[str, jax.Array]  # the algorithm's sweepable settings, as data


@struct.dataclass
class ModelState:
  """Everything that changes during an `mle` run (one seed): PPOState's fields, the model
  and the real buffer it is fitted on."""

  agent_params: Params
  agent_opt: optax.OptState
  model_params: Params  # φ
  model_opt: optax.OptState
  obs_stats: RunningStats  # shared by policy, value and model
  env_state: Any
  buffer: ReplayBuffer  # real transitions
  key: jax.Array
  iteration: jax.Array
  env_steps: jax.Array
  hparams: dict[str, jax.Array]


@struct.dataclass
class MGState(ModelState):
  """An `mg` run's state: ModelState's fields and the running average of g_R."""

  real_grad_avg: Params
  mg_opt: optax.OptState | None = None  # the MG term's own Adam state (mg_optimizer=separate)


# ------------------------------------------------------------------------------ setup
class MGSettings(NamedTuple):
  """The MG stage (from `Config`: mg_steps, mg_rollouts, mg_horizon, mg_start,
  similarity, estimator, mg_optimizer, mg_weight, mg_advantages)."""

  steps: int
  rollouts: int
  horizon: int
  start: str  # "batch" | "buffer"
  similarity: str
  estimator: str
  optimizer: str = "shared"  # "shared" | "separate"
  weight: float = 1.0
  advantages: str = "raw"  # `mgjax.losses.transform_advantages` of g_R and ĝ_M


@dataclasses.dataclass(frozen=True)
class Setup:
  """The static parts of an mg/mle/ppo run, built once from the config."""

  env: envs.EnvInfo
  train_env: envs.TrainingEnv
  nets: PPONetworks
  model_net: networks.Network
  agent_optimizer: optax.GradientTransformation
  model_optimizer: optax.GradientTransformation
  action_mode: str
  rollout_length: int
  batch_steps: int
  discount: float
  gae_lambda: float
  ppo_epochs: int
  num_minibatches: int
  buffer_size: int
  mle_steps: int
  mle_batch: int
  mg: MGSettings
  model_rollouts: int
  model_horizon: int
  model_updates: int
  real_value_steps: int
  real_value_learning_rate: float
  num_eval_envs: int
  kind: str  # "mg" | "mle" | "ppo": which of the three loops (a derived variant keeps its base's)
  hparam_defaults: tuple[tuple[str, float], ...]  # the sweepable settings' config values
  # (setup, state, g_R target) -> the ModelObjective of the MG steps; a variant may replace it
  objective: Callable[..., ModelObjective] = model_objective

  def model(self, stats: RunningStats) -> Model:
    return networks.make_model(self.model_net, stats, self.env.termination_fn, self.action_mode)

  def nll(self, stats: RunningStats):
    """The model's NLL loss (params, rows) -> scalar under the given statistics."""
    return functools.partial(
      nll_loss, net=self.model_net, stats=stats, action_mode=self.action_mode
    )


def setup(c: Config, info: envs.EnvInfo, kind: str = "mg") -> Setup:
  """The static parts of a `kind` run (mg, mle or ppo) of config `c` on env `info`."""
  return Setup(
    env=info,
    train_env=envs.TrainingEnv(info, c.num_envs, c.env_group),
    nets=PPONetworks(
      networks.make_policy_network(
        info.obs_size, info.action_size, c.policy_hidden, c.init_log_std
      ),
      networks.make_value_network(info.obs_size, c.value_hidden),
    ),
    model_net=networks.make_model_network(
      info.obs_size, info.action_size, c.model_hidden, c.ensemble_size
    ),
    agent_optimizer=adam(c.learning_rate, c.max_grad_norm),
    model_optimizer=adam(c.model_learning_rate),
    action_mode=c.action_mode,
    rollout_length=c.rollout_length,
    batch_steps=c.batch_steps,
    discount=c.discount,
    gae_lambda=c.gae_lambda,
    ppo_epochs=c.ppo_epochs,
    num_minibatches=c.num_minibatches,
    buffer_size=c.buffer_size,
    mle_steps=c.mle_steps,
    mle_batch=c.mle_batch,
    mg=MGSettings(
      c.mg_steps,
      c.mg_rollouts,
      c.mg_horizon,
      c.mg_start,
      c.similarity,
      c.estimator,
      c.mg_optimizer,
      c.mg_weight,
      c.mg_advantages,
    ),
    model_rollouts=c.model_rollouts,
    model_horizon=c.model_horizon,
    model_updates=c.model_updates,
    real_value_steps=c.real_value_steps,
    real_value_learning_rate=c.real_value_learning_rate,
    num_eval_envs=c.num_eval_envs,
    kind=kind,
    hparam_defaults=tuple((n, getattr(c, n)) for n in SWEEPABLE[kind]),
  )


def init(su: Setup, key: jax.Array, hparams: dict | None = None):
  """A fresh state (PPOState, ModelState or MGState); `hparams` overrides some of the
  sweepable settings."""
  hp = init_hparams(su.kind, dict(su.hparam_defaults), hparams)
  kp, kv, km, ke, key = jax.random.split(key, 5)
  agent = {"policy": su.nets.policy.init(kp), "value": su.nets.value.init(kv)}
  common = dict(
    obs_stats=init_stats(su.env.obs_size),
    env_state=su.train_env.reset(ke),
    key=key,
    iteration=jnp.zeros((), jnp.int32),
    env_steps=jnp.zeros((), jnp.int32),
    hparams=hp,
  )
  agent_opt = set_learning_rate(su.agent_optimizer.init(agent), hp["learning_rate"])
  if su.kind == "ppo":
    return PPOState(agent_params=agent, agent_opt=agent_opt, **common)
  model_params = su.model_net.init(km)
  model_opt = set_learning_rate(su.model_optimizer.init(model_params), hp["model_learning_rate"])
  buffer = buffer_init(empty_row(su.env.obs_size, su.env.action_size), su.buffer_size)
  parts = dict(
    agent_params=agent,
    agent_opt=agent_opt,
    model_params=model_params,
    model_opt=model_opt,
    buffer=buffer,
    **common,
  )
  if su.kind == "mle":
    return ModelState(**parts)
  mg_opt = None
  if su.mg.optimizer == "separate":
    mg_opt = set_learning_rate(su.model_optimizer.init(model_params), hp["model_learning_rate"])
  return MGState(
    **parts, real_grad_avg=jax.tree.map(jnp.zeros_like, agent["policy"]), mg_opt=mg_opt
  )


# ------------------------------------------------------------------------------ stages
def collect(
  train_env: envs.TrainingEnv,
  policy,
  policy_params: Params,
  env_state,
  key: jax.Array,
  *,
  rollout_length: int,
  action_mode: str,
):
  """Runs the policy for rollout_length steps in the training envs
  -> (env_state, Transition [T, N])."""
  rkey, key = jax.random.split(key)
  env_state = train_env.refresh_resets(env_state, rkey)

  def step(env_state, step_key):
    raw = jax.vmap(policy.sample, in_axes=(None, 0, 0))(
      policy_params, env_state.obs, jax.random.split(step_key, train_env.num_envs)
    )
    nxt = train_env.step(env_state, networks.env_action(raw, action_mode))
    tr = Transition(
      env_state.obs,
      raw,
      nxt.reward,
      nxt.info["final_obs"],
      nxt.info["termination"],
      nxt.info["truncation"],
      {},
    )
    return nxt, tr

  return jax.lax.scan(step, env_state, jax.random.split(key, rollout_length))


def real_advantages(
  value_fn, value_params: Params, batch: Transition, *, discount: float, gae_lambda: float
):
  """GAE on a real batch [T, N] with V_ψ, bootstrapping truncated steps from V(s'_t)
  -> (advantages, targets)."""
  v_batch = jax.vmap(value_fn, in_axes=(None, 0))
  v = lambda o: jax.vmap(v_batch, in_axes=(None, 0))(value_params, o)
  return losses.gae_from_next_values(
    batch.reward,
    v(batch.obs),
    v(batch.next_obs),
    batch.termination,
    batch.truncation,
    discount=discount,
    gae_lambda=gae_lambda,
  )


def _flat(x: jax.Array) -> jax.Array:
  """[T, N, ...] -> [T·N, ...]."""
  return x.reshape((-1,) + x.shape[2:])


def real_critic(
  value_fn, value_params: Params, batch: Transition, *, steps: int, learning_rate: float, **gae_kw
) -> Params:
  """ψ_R: V_ψ also fitted on the real batch's returns, for the MG target only (`real_value_steps`;
  PPO keeps ψ). `steps` full-batch Adam steps of ½ mean (V(s) − G^λ)², the λ-return targets G^λ
  from ψ (`real_advantages`) held fixed; ψ itself when steps = 0."""
  if not steps:
    return value_params
  _, targets = real_advantages(value_fn, value_params, batch, **gae_kw)
  obs, targets = _flat(batch.obs), _flat(targets)
  optimizer = optax.adam(learning_rate)

  def step(carry, _):
    params, opt = carry
    grads = jax.grad(
      lambda p: losses.value_loss(jax.vmap(value_fn, in_axes=(None, 0))(p, obs), targets)
    )(params)
    updates, opt = optimizer.update(grads, opt, params)
    return (optax.apply_updates(params, updates), opt), None

  (params, _), _ = jax.lax.scan(step, (value_params, optimizer.init(value_params)), None, steps)
  return params


def real_policy_gradient(
  policy,
  policy_params: Params,
  batch: Transition,
  advantages: jax.Array,
  transform: str = "raw",
) -> Params:
  """g_R = ∇_θ mean[log π(a|s) Â] on the real batch, Â as `transform` gives it over the
  batch (`mgjax.losses.transform_advantages`; the convention ĝ_M must use too)."""
  return policy_gradient(
    policy_params,
    policy=policy,
    obs=_flat(batch.obs),
    actions=_flat(batch.action),
    advantages=losses.transform_advantages(_flat(advantages), transform),
  )


def heldout_alignment(
  su: Setup, state: ModelState, batch: Transition, advantages: jax.Array, key: jax.Array
) -> jax.Array:
  """cos(ĝ_M, g_R) out of sample, alike for mg and mle: the model has not been fitted on this
  batch yet, g_R is taken on the first half of its envs and ĝ_M's start states are drawn from
  the other half, so the two share no noise (NaN with one env)."""
  half = su.train_env.num_envs // 2
  if not half:
    return _NAN
  first = lambda x: x[:, :half]
  real_grad = real_policy_gradient(
    su.nets.make_policy(state.obs_stats),
    state.agent_params["policy"],
    jax.tree.map(first, batch),
    first(advantages),
    su.mg.advantages,
  )
  skey, rkey = jax.random.split(key)
  states = _flat(batch.obs[:, half:])
  start = states[jax.random.randint(skey, (su.mg.rollouts,), 0, states.shape[0])]
  _, metrics = mg_loss_from(su, state, state.model_params, start, rkey, real_grad)
  return metrics["cosine"]


def batch_rows(batch: Transition) -> dict[str, jax.Array]:
  """A real batch [T, N] as the buffers' flat rows [T·N]."""
  return rows(
    _flat(batch.obs),
    _flat(batch.action),
    _flat(batch.reward),
    _flat(batch.next_obs),
    _flat(batch.termination),
  )


def model_ppo_batch(su: Setup, state: ModelState, key: jax.Array) -> PPOBatch:
  """Branched rollouts of horizon H in the model from buffer states, with GAE that
  bootstraps V(s_H) and stops at predicted termination."""
  skey, rkey = jax.random.split(key)
  start = buffer_sample(state.buffer, skey, su.model_rollouts)["obs"]
  stats = state.obs_stats
  obs, actions, rewards, dones, alive = rollout(
    state.model_params,
    state.agent_params["policy"],
    start,
    rkey,
    policy=su.nets.make_policy(stats),
    model=su.model(stats),
    horizon=su.model_horizon,
  )
  value_fn = su.nets.make_value_fn(stats)
  values = jax.vmap(jax.vmap(value_fn, in_axes=(None, 0)), in_axes=(None, 0))(
    state.agent_params["value"], obs
  )
  adv, targets = losses.gae(
    rewards, values[:-1], values[-1], dones, discount=su.discount, gae_lambda=su.gae_lambda
  )
  # Model data is data to PPO: no gradient reaches the model through it.
  return jax.lax.stop_gradient(
    PPOBatch(_flat(obs[:-1]), _flat(actions), _flat(adv), _flat(targets), _flat(alive))
  )


def real_ppo_batch(batch: Transition, advantages: jax.Array, targets: jax.Array) -> PPOBatch:
  return PPOBatch(
    _flat(batch.obs),
    _flat(batch.action),
    _flat(advantages),
    _flat(targets),
    jnp.ones_like(_flat(advantages)),
  )


def policy_update(su: Setup, state, batch: PPOBatch, key: jax.Array):
  """One PPO update (`mgjax.agents.ppo.ppo_update`) of the state's policy and value."""
  hp = state.hparams
  params, opt, metrics = ppo_update(
    state.agent_params,
    state.agent_opt,
    batch,
    key,
    nets=su.nets,
    stats=state.obs_stats,
    optimizer=su.agent_optimizer,
    coeffs=PPOCoefficients(hp["clip_eps"], hp["value_coef"], hp["entropy_coef"]),
    epochs=su.ppo_epochs,
    num_minibatches=su.num_minibatches,
    obs_size=su.env.obs_size,
  )
  return state.replace(agent_params=params, agent_opt=opt), metrics


def policy_params(state) -> dict:
  """The policy network and the observation statistics it normalises with."""
  return {"agent_params": {"policy": state.agent_params["policy"]}, "obs_stats": state.obs_stats}


def make_policy(su: Setup, params: dict, deterministic: bool = True):
  """act(obs [B, obs_size], key) -> env actions: the Gaussian's mean (deterministic) or a
  sample, squashed to [-1, 1] by `action_mode` as in training."""
  stats, net_params = params["obs_stats"], params["agent_params"]["policy"]

  def act(obs, key=None):
    mean, log_std = jax.vmap(su.nets.policy.apply, in_axes=(None, 0))(
      net_params, normalize(stats, obs)
    )
    if not deterministic:
      mean = mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape)
    return networks.env_action(mean, su.action_mode)

  return act


def evaluate(su: Setup, state, key: jax.Array) -> dict[str, jax.Array]:
  """Deterministic policy (mean action), full episodes in fresh eval envs."""
  out = envs.evaluate(su.env, make_policy(su, policy_params(state)), key, su.num_eval_envs)
  return {"eval_return": out["return"], "eval_length": out["length"]}


# ------------------------------------------------------------------------------ the loop
def collect_batch(su: Setup, state, key: jax.Array):
  """Step 1: `collect` with the state's policy and envs -> (env_state, Transition [T, N])."""
  return collect(
    su.train_env,
    su.nets.make_policy(state.obs_stats),
    state.agent_params["policy"],
    state.env_state,
    key,
    rollout_length=su.rollout_length,
    action_mode=su.action_mode,
  )


def nll_steps(su: Setup, state: ModelState, key: jax.Array):
  """K_mle NLL steps of the model on the buffer -> (params, opt_state, mean loss)."""
  return fit_mle(
    state.model_params,
    state.model_opt,
    state.buffer,
    key,
    loss=su.nll(state.obs_stats),
    optimizer=su.model_optimizer,
    steps=su.mle_steps,
    batch_size=su.mle_batch,
  )


def model_policy_updates(su: Setup, state: ModelState, key: jax.Array):
  """Step 4 of mg and mle: model_updates PPO updates, each on fresh branched model rollouts
  -> (state, (policy losses, value losses, entropies) [model_updates])."""

  def policy_round(s, k):
    bk, uk = jax.random.split(k)
    return policy_update(su, s, model_ppo_batch(su, s, bk), uk)

  return jax.lax.scan(policy_round, state, jax.random.split(key, su.model_updates))


def fit_model(
  su: Setup,
  state: ModelState,
  batch: Transition,
  advantages: jax.Array,
  real_grad: Params,
  key: jax.Array,
  stage=inline,
):
  """Step 3: the held-out alignment, then the batch joins the buffer, K_mle NLL steps, (mg)
  K_mg MG steps, and the alignment diagnostic -> (state, metrics). The last three run through
  `stage(name, fn, *args)` ("nll_steps", "mg_steps", "alignment"), as in `iteration`."""
  # Its key comes from fold_in, leaving the fit's stream as it was.
  metrics = {
    "model_grad_cosine_heldout": heldout_alignment(
      su, state, batch, advantages, jax.random.fold_in(key, 1)
    )
  }
  new_rows = batch_rows(batch)
  # Held out: the model has not been fitted on this batch yet.
  metrics["model_nll"] = model_nll(
    su.model_net,
    state.obs_stats,
    state.model_params,
    new_rows["obs"],
    new_rows["action"],
    new_rows["next_obs"],
    new_rows["reward"],
    su.action_mode,
  )
  state = state.replace(buffer=buffer_add(state.buffer, new_rows))
  k1, k2, k3 = jax.random.split(key, 3)
  params, opt, metrics["mle_loss"] = stage("nll_steps", nll_steps, su, state, k1)
  state = state.replace(model_params=params, model_opt=opt)
  if isinstance(state, MGState):
    avg, target = average_real_grad(
      state.real_grad_avg, real_grad, state.hparams["real_grad_ema"], state.iteration
    )
    state, mg_metrics = stage(
      "mg_steps", fit_model_mg, su, state.replace(real_grad_avg=avg), k2, target
    )
    metrics.update(mg_metrics)
  metrics["model_grad_cosine"] = stage("alignment", model_alignment, su, state, k3, real_grad)
  return state, metrics


def iteration(su: Setup, state, stage=inline):
  """One collect–fit–optimise iteration -> (state, per-iteration metrics). Its stages run
  through `stage(name, fn, su, *args)`: "collect", then for mg and mle "nll_steps",
  (mg) "mg_steps", "alignment" and "policy_updates", for ppo "policy_update"; the default
  calls `fn` in place (`experiments/bench_speed.py` passes one that times each stage)."""
  key, ckey, mkey, gkey, akey, pkey = jax.random.split(state.key, 6)
  env_state, batch = stage("collect", collect_batch, su, state, ckey)
  stats = update_stats(state.obs_stats, batch.obs)
  state = state.replace(
    env_state=env_state,
    obs_stats=stats,
    key=key,
    iteration=state.iteration + 1,
    env_steps=state.env_steps + su.batch_steps,
  )
  adv, targets = real_advantages(
    su.nets.make_value_fn(stats),
    state.agent_params["value"],
    batch,
    discount=su.discount,
    gae_lambda=su.gae_lambda,
  )
  metrics = {"train_return": mean_episode_return(env_state)}

  if isinstance(state, ModelState):
    if su.real_value_steps:  # g_R's advantages from a critic also fitted on real returns
      gae_kw = dict(discount=su.discount, gae_lambda=su.gae_lambda)
      value_fn = su.nets.make_value_fn(stats)
      psi_real = real_critic(
        value_fn,
        state.agent_params["value"],
        batch,
        steps=su.real_value_steps,
        learning_rate=su.real_value_learning_rate,
        **gae_kw,
      )
      adv, _ = real_advantages(value_fn, psi_real, batch, **gae_kw)
    real_grad = real_policy_gradient(
      su.nets.make_policy(stats), state.agent_params["policy"], batch, adv, su.mg.advantages
    )
    state, fit_metrics = fit_model(su, state, batch, adv, real_grad, mkey, stage)
    metrics.update(fit_metrics)
    state, (pl, vl, ent) = stage("policy_updates", model_policy_updates, su, state, pkey)
    pl, vl, ent = pl.mean(), vl.mean(), ent.mean()
  else:
    state, (pl, vl, ent) = stage(
      "policy_update", policy_update, su, state, real_ppo_batch(batch, adv, targets), pkey
    )
  metrics.update(policy_loss=pl, value_loss=vl, entropy=ent, env_steps=state.env_steps)
  for name in METRICS:
    metrics.setdefault(name, _NAN)
  return state, metrics


# ------------------------------------------------------------------------------ for the runner
def validate(c: Config, kind: str = "mg") -> None:
  """PPO minibatches must split the batch they are cut from; the buffer must hold an
  iteration; the score estimator's baseline needs two MG rollouts."""
  uses_model = kind in ("mg", "mle")
  ppo_batch = c.model_rollouts * c.model_horizon if uses_model else c.batch_steps
  ppo_field = "model_rollouts*model_horizon" if uses_model else "num_envs*rollout_length"
  if ppo_batch % c.num_minibatches:
    fail("num_minibatches", c.num_minibatches, f"does not divide {ppo_field} = {ppo_batch}")
  if uses_model:
    if c.buffer_size < c.batch_steps:
      fail(
        "buffer_size",
        c.buffer_size,
        f"smaller than one iteration's batch (num_envs*rollout_length = {c.batch_steps})",
      )
    if c.mle_batch > c.buffer_size:
      fail("mle_batch", c.mle_batch, f"larger than buffer_size = {c.buffer_size}")
  if kind == "mg" and c.mg_rollouts < 2 and c.estimator == "score":
    fail("mg_rollouts", c.mg_rollouts, "the score estimator's baseline needs at least 2")
  if c.real_value_steps and not uses_model:
    fail(
      "real_value_steps",
      c.real_value_steps,
      "is for mg and mle: ppo's critic is fitted on real data",
    )
  if c.real_grad_states:
    fail(
      "real_grad_states",
      c.real_grad_states,
      "is for mbpo and mg-sac: the PPO loop's g_R is its batch's (denoise it with real_grad_ema)",
    )


def watched(c: Config, kind: str = "mg") -> tuple[str, ...]:
  """The losses whose non-finite value is a blow-up."""
  names = ("policy_loss", "value_loss")
  if kind == "ppo":
    return names
  return (
    names
    + ("model_nll",)
    + (("mle_loss",) if c.mle_steps else ())
    + (("mg_loss",) if kind == "mg" and c.mg_steps else ())
  )


def _algorithm(kind: str, color: str) -> Algorithm:
  spec = Spec(METRICS, SWEEPABLE[kind], watched, color=color)
  return loop_algorithm(kind, sys.modules[__name__], lambda env: {}, spec)


# Red, blue and gray in figures.
MG, MLE, PPO = _algorithm("mg", "C3"), _algorithm("mle", "C0"), _algorithm("ppo", "C7")
