"""The stages of the `mg`, `mle` and `ppo` loop that act and learn on real data and run PPO:
collecting a real batch, its advantages and policy gradient g_R, a critic fitted on real
returns, the batches PPO updates on (real, or branched model rollouts), the PPO update, and
the acting policy. `mgjax.algorithms.mg` composes them; their `su` is its `Setup`.
"""

import jax
import jax.numpy as jnp
import optax

from mgjax import envs, losses
from mgjax.agents.ppo import PPOBatch, PPOCoefficients, ppo_update
from mgjax.buffer import buffer_sample, rows
from mgjax.model_gradient import policy_gradient, rollout
from mgjax.nets import networks
from mgjax.nets.normalization import normalize
from mgjax.types import Params, Transition


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


def batch_rows(batch: Transition) -> dict[str, jax.Array]:
  """A real batch [T, N] as the buffers' flat rows [T·N]."""
  return rows(
    _flat(batch.obs),
    _flat(batch.action),
    _flat(batch.reward),
    _flat(batch.next_obs),
    _flat(batch.termination),
  )


def model_ppo_batch(su, state, key: jax.Array) -> PPOBatch:
  """Branched rollouts of horizon H in the model from buffer states, with GAE that
  bootstraps V(s_H) and stops at predicted termination."""
  skey, rkey = jax.random.split(key)
  start = buffer_sample(state.buffer, skey, su.model_ppo.model_rollouts)["obs"]
  stats = state.obs_stats
  obs, actions, rewards, dones, alive = rollout(
    state.model_params,
    state.agent_params["policy"],
    start,
    rkey,
    policy=su.nets.make_policy(stats),
    model=su.model(stats),
    horizon=su.model_ppo.model_horizon,
  )
  value_fn = su.nets.make_value_fn(stats)
  values = jax.vmap(jax.vmap(value_fn, in_axes=(None, 0)), in_axes=(None, 0))(
    state.agent_params["value"], obs
  )
  adv, targets = losses.gae(
    rewards, values[:-1], values[-1], dones, discount=su.ppo.discount, gae_lambda=su.ppo.gae_lambda
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


def policy_update(su, state, batch: PPOBatch, key: jax.Array):
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
    epochs=su.ppo.ppo_epochs,
    num_minibatches=su.ppo.num_minibatches,
    obs_size=su.env.obs_size,
  )
  return state.replace(agent_params=params, agent_opt=opt), metrics


def policy_params(state) -> dict:
  """The policy network and the observation statistics it normalises with."""
  return {"agent_params": {"policy": state.agent_params["policy"]}, "obs_stats": state.obs_stats}


def make_policy(su, params: dict, deterministic: bool = True):
  """act(obs [B, obs_size], key) -> env actions: the Gaussian's mean (deterministic) or a
  sample, squashed to [-1, 1] by `action_mode` as in training."""
  stats, net_params = params["obs_stats"], params["agent_params"]["policy"]

  def act(obs, key=None):
    mean, log_std = jax.vmap(su.nets.policy.apply, in_axes=(None, 0))(
      net_params, normalize(stats, obs)
    )
    if not deterministic:
      mean = mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape)
    return networks.env_action(mean, su.ppo.action_mode)

  return act


def evaluate(su, state, key: jax.Array) -> dict[str, jax.Array]:
  """Deterministic policy (mean action), full episodes in fresh eval envs."""
  out = envs.evaluate(su.env, make_policy(su, policy_params(state)), key, su.run.num_eval_envs)
  return {"eval_return": out["return"], "eval_length": out["length"]}
