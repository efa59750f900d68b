"""`sac`: model-free SAC (Haarnoja et al. 2018, arXiv:1812.05905) in MBPO's loop, and the
stages of that loop that `mbpo` and `mg-sac` share.

Before the first iteration `exploration_steps` uniform-random env steps fill the real
buffer. One iteration is rollout_length steps of the training envs, each followed by
updates_per_step·num_envs SAC updates (`collect_and_update`); `sac` draws its minibatches
from the real buffer, `mbpo` mixes in model data (`mgjax.algorithms.mbpo`). The SAC
settings and the evaluation schedule are MBPO's, so the three algorithms compare on equal
terms; SAC's paper takes one update per env step, its default here.
"""

import dataclasses
import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
from flax import struct

from mgjax import envs
from mgjax.agents import sac
from mgjax.algorithms.base import Algorithm, Spec, init_hparams, mean_episode_return
from mgjax.buffer import ReplayBuffer, buffer_add, buffer_init, buffer_sample, empty_row, rows
from mgjax.config import Config, RunConfig, fail
from mgjax.nets import networks
from mgjax.optim import adam, set_learning_rate
from mgjax.types import Params, Transition

SWEEPABLE = ("sac_learning_rate", "tau")
METRICS = ("train_return", "entropy", "critic_loss", "actor_loss", "alpha", "q_mean")
BatchFn = Callable[[Any, jax.Array], Transition]  # (state, key) -> a SAC minibatch


@struct.dataclass
class SACState:
  """Everything that changes during a `sac` run (one seed)."""

  sac: sac.SACParams
  sac_opt: sac.SACOptState
  env_state: Any
  buffer: ReplayBuffer  # real transitions
  key: jax.Array
  iteration: jax.Array
  env_steps: jax.Array
  hparams: dict[str, jax.Array]  # the algorithm's sweepable settings, as data


@dataclasses.dataclass(frozen=True)
class SACSetup:
  """The static parts of a sac run, built once from the config."""

  env: envs.EnvInfo
  train_env: envs.TrainingEnv
  actor_net: networks.Network
  q_net: networks.Network
  sac_optimizers: sac.SACOptimizers
  run: RunConfig  # the config's parts that the loop reads
  sac: sac.SACConfig  # its target_entropy resolved (0 -> -action_size)
  hparam_defaults: tuple[tuple[str, float], ...]


def setup(c: Config, info: envs.EnvInfo) -> SACSetup:
  return SACSetup(
    env=info,
    train_env=envs.TrainingEnv(info, c.num_envs, c.env_group),
    actor_net=sac.make_actor_network(
      info.obs_size, info.action_size, c.sac_hidden, c.sac_activation, c.sac_std_head
    ),
    q_net=sac.make_q_network(
      info.obs_size,
      info.action_size,
      c.sac_hidden,
      activation=c.sac_activation,
      out_scale=c.sac_q_out_scale,
    ),
    sac_optimizers=sac.SACOptimizers(*(adam(c.sac_learning_rate) for _ in range(3))),
    run=RunConfig.of(c),
    sac=dataclasses.replace(
      sac.SACConfig.of(c),
      target_entropy=c.target_entropy or sac.default_target_entropy(info.action_size),
    ),
    hparam_defaults=tuple((n, getattr(c, n)) for n in SWEEPABLE),
  )


# ------------------------------------------------------------------------------ shared stages
def init_sac(su, key: jax.Array, hp: dict[str, jax.Array]):
  """Fresh SAC parameters and their optimizer states (learning rate from `hp`)."""
  params = sac.init_params(su.actor_net, su.q_net, key)
  opt = jax.tree.map(
    lambda o: set_learning_rate(o, hp["sac_learning_rate"]),
    sac.init_opt_state(su.sac_optimizers, params),
    is_leaf=lambda x: hasattr(x, "hyperparams"),
  )
  return params, opt


def explore(su, state, key: jax.Array):
  """`exploration_steps` uniform-random env steps into the real buffer
  -> (state, the observations acted on [steps, num_envs, obs_size])."""

  def one(s, k):
    action = jax.random.uniform(k, (su.run.num_envs, su.env.action_size), minval=-1.0, maxval=1.0)
    return env_step(su.train_env, s, action), s.env_state.obs

  return jax.lax.scan(
    one, state, jax.random.split(key, su.sac.exploration_steps // su.run.num_envs)
  )


def env_step(train_env: envs.TrainingEnv, state, action: jax.Array):
  """One step of the training envs; the transition goes to the real buffer."""
  nxt = train_env.step(state.env_state, action)
  new = rows(
    state.env_state.obs, action, nxt.reward, nxt.info["final_obs"], nxt.info["termination"]
  )
  return state.replace(
    env_state=nxt,
    buffer=buffer_add(state.buffer, new),
    env_steps=state.env_steps + train_env.num_envs,
  )


def sample_actions(
  actor_net: networks.Network, actor_params: Params, obs: jax.Array, key: jax.Array
) -> jax.Array:
  """Stochastic SAC actions for a batch of observations [N, obs_size]."""
  return sac.sample_actions(actor_net.apply, actor_params, obs, key)[0]


def as_transition(batch: dict[str, jax.Array]) -> Transition:
  """Buffer rows as SAC's Transition (truncation 0: next_obs is the true next observation,
  so only termination stops the bootstrap)."""
  return Transition(
    batch["obs"],
    batch["action"],
    batch["reward"],
    batch["next_obs"],
    batch["termination"],
    jnp.zeros_like(batch["reward"]),
    {},
  )


def sac_step(su, state, key: jax.Array, batch_fn: BatchFn):
  """One SAC update on the minibatch `batch_fn(state, key)` -> (state, metrics)."""
  bkey, ukey = jax.random.split(key)
  params, opt, metrics = sac.sac_update(
    state.sac,
    state.sac_opt,
    batch_fn(state, bkey),
    ukey,
    q_fn=su.q_net.apply,
    actor_fn=su.actor_net.apply,
    optimizers=su.sac_optimizers,
    discount=su.sac.discount,
    tau=state.hparams["tau"],
    target_entropy=su.sac.target_entropy,
  )
  return state.replace(sac=params, sac_opt=opt), metrics


def collect_and_update(su, state, key: jax.Array, batch_fn: BatchFn):
  """rollout_length steps of the training envs, each followed by
  updates_per_step·num_envs SAC updates -> (state, mean SAC metrics, observed obs)."""
  update = functools.partial(sac_step, su, batch_fn=batch_fn)

  def one_step(s, k):
    akey, ukey = jax.random.split(k)
    obs = s.env_state.obs
    s = env_step(su.train_env, s, sample_actions(su.actor_net, s.sac.actor, obs, akey))
    s, metrics = jax.lax.scan(
      update, s, jax.random.split(ukey, su.sac.updates_per_step * su.run.num_envs)
    )
    return s, (jax.tree.map(jnp.mean, metrics), obs)

  state, (metrics, obs) = jax.lax.scan(
    one_step, state, jax.random.split(key, su.run.rollout_length)
  )
  return state, jax.tree.map(jnp.mean, metrics), obs


def policy_params(state) -> dict:
  """The actor (SAC's family does not normalise the actor's observations)."""
  return {"sac": {"actor": state.sac.actor}}


def make_policy(su, params: dict, deterministic: bool = True):
  """act(obs [B, obs_size], key) -> actions: tanh of the actor's mean (deterministic) or a
  tanh-Gaussian sample, one key per row."""
  actor = params["sac"]["actor"]

  def act(obs, key=None):
    if deterministic:
      mean, _ = jax.vmap(su.actor_net.apply, in_axes=(None, 0))(actor, obs)
      return sac.deterministic_action(mean)
    return sample_actions(su.actor_net, actor, obs, key)

  return act


def evaluate(su, state, key: jax.Array) -> dict[str, jax.Array]:
  """Deterministic actor (tanh of the mean), full episodes in fresh eval envs."""
  out = envs.evaluate(su.env, make_policy(su, policy_params(state)), key, su.run.num_eval_envs)
  return {"eval_return": out["return"], "eval_length": out["length"]}


# ------------------------------------------------------------------------------ sac itself
def init(su: SACSetup, key: jax.Array, hparams: dict | None = None) -> SACState:
  """Fresh parameters and buffer, then `exploration_steps` uniform-random env steps."""
  hp = init_hparams("sac", dict(su.hparam_defaults), hparams)
  ks, ke, kx, key = jax.random.split(key, 4)
  params, opt = init_sac(su, ks, hp)
  state = SACState(
    sac=params,
    sac_opt=opt,
    env_state=su.train_env.reset(ke),
    buffer=buffer_init(empty_row(su.env.obs_size, su.env.action_size), su.run.buffer_size),
    key=key,
    iteration=jnp.zeros((), jnp.int32),
    env_steps=jnp.zeros((), jnp.int32),
    hparams=hp,
  )
  return explore(su, state, kx)[0]


def real_batch(su: SACSetup, state: SACState, key: jax.Array) -> Transition:
  """sac_batch uniform rows of the real buffer."""
  return as_transition(buffer_sample(state.buffer, key, su.sac.sac_batch))


def iteration(su: SACSetup, state: SACState):
  """rollout_length env steps, each followed by updates_per_step·num_envs SAC updates on
  real minibatches -> (state, per-iteration metrics)."""
  key, ckey, ekey = jax.random.split(state.key, 3)
  state = state.replace(key=key, env_state=su.train_env.refresh_resets(state.env_state, ekey))
  state, metrics, _ = collect_and_update(su, state, ckey, functools.partial(real_batch, su))
  state = state.replace(iteration=state.iteration + 1)
  metrics.update(env_steps=state.env_steps, train_return=mean_episode_return(state.env_state))
  return state, metrics


# ------------------------------------------------------------------------------ for the runner
# MBPO's SAC settings (Janner et al. 2019, appendix C): one env, an evaluation every 1000
# env steps, a 1M-row buffer, and the entropy target per env (`SACConfig.for_env`); humanoid
# acts 1000 steps per iteration.
_SAC_COMMON = {"num_envs": 1, "rollout_length": 250, "eval_every": 4, "buffer_size": 1_000_000}
SAC_RUN_PRESETS: dict[str, dict[str, Any]] = {"humanoid": {"rollout_length": 1000, "eval_every": 1}}


def sac_preset(env: str) -> dict[str, Any]:
  """MBPO's SAC settings on `env` where they differ from Config's."""
  return {**_SAC_COMMON, **sac.SACConfig.for_env(env).changed(), **SAC_RUN_PRESETS.get(env, {})}


def validate(c: Config) -> None:
  if c.buffer_size < c.exploration_steps + c.batch_steps:
    fail("buffer_size", c.buffer_size, "smaller than exploration_steps + one iteration")


SAC = Algorithm(
  name="sac",
  setup=setup,
  init=init,
  iteration=iteration,
  evaluate=evaluate,
  policy_params=policy_params,
  make_policy=make_policy,
  validate=validate,
  preset=lambda env: {**sac_preset(env), "updates_per_step": 1},
  spec=Spec(
    METRICS,
    SWEEPABLE,
    lambda c: ("critic_loss", "actor_loss"),
    False,
    color="C4",
    parts=(sac.SACConfig,),
  ),
  initial_steps=lambda c: c.exploration_steps,
)  # purple in figures
