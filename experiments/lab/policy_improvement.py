"""The policy-improvement probe: does a better-aligned model give a better policy?

From one frozen snapshot (policy θ, value ψ, model φ_0, its optimiser state, observation
statistics and buffer) of an `mle` run, the probe collects `fit_batches` real batches with
π_θ (the loop's size) to fit on and two held-out sets of `heldout_batches` real batches, A
and B, to measure on. Each model arm fits φ_0 with several fit keys:

  nll                   the loop's K_mle NLL steps on the buffer grown by the fit batches;
  mg                    the loop's model stage: the same NLL steps, then its K_mg MG steps
                        (`mg_model.fit_model_mg`) on the last fit batch's g_R;
  mg-full               the same with MG at full strength: its own Adam state
                        (mg_optimizer=separate, fresh), mg_weight=1, no clip
                        (mg_max_grad_norm=0), and PPO's advantage convention on both
                        sides (mg_advantages=normalised);
  mg-target16-score     the alignment probe's `mg-target16` objective (`probe.fit`: K_mle
  mg-target16-pathwise  steps of NLL + MG, the target averaged over every fit batch), with
                        the score or the pathwise estimator;

and from each fitted model the loop's own PPO stage (`mg.model_policy_updates`) runs with
several PPO keys, giving θ⁺. The reference arm `real16` is one PPO update on the fit
batches alone, with as many minibatch steps as the model stage takes.

Every θ⁺ is measured against θ with common random numbers:
  dJ         J(θ⁺) − J(θ) on the same deterministic-policy episodes (the same reset keys
             for θ and every θ⁺; set A and set B have their own keys);
  surrogate  mean over a held-out set's batches of mean[π_θ⁺(a|s)/π_θ(a|s) · Â], Â the
             snapshot critic's GAE advantages normalised per batch as PPO does (so θ⁺ = θ
             scores mean Â ≈ 0);
  kl         mean[r − 1 − log r], r = π_θ⁺/π_θ, on a held-out set (a sample estimate of
             KL(π_θ‖π_θ⁺) that is never negative).
And every fitted model's out-of-sample alignment: cos(ĝ_M, ḡ_R), ĝ_M averaged over
`draws` draws of MG rollouts from set A's states, ḡ_R the mean g_R of set B (disjoint
states), under raw and under normalised advantages, and its NLL on set B.
"""

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from lab import probe

from mgjax import losses
from mgjax.agents.ppo import PPOBatch
from mgjax.algorithms import mg, mg_model
from mgjax.buffer import buffer_add
from mgjax.envs.core import batched_reset, batched_step, where_done
from mgjax.models.nll import model_nll
from mgjax.optim import set_learning_rate
from mgjax.types import Params

TARGET_ARMS = {
  "mg-target16-score": probe.Objective("mg-target16", mg=True, target_batches=16),
  "mg-target16-pathwise": probe.Objective(
    "mg-pathwise-target16", mg=True, estimator="pathwise", target_batches=16
  ),
}
MODEL_ARMS = ("nll", "mg", "mg-full", *TARGET_ARMS)
REAL_ARM = "real16"
ARMS = (*MODEL_ARMS, REAL_ARM)
SETS = ("A", "B")


class Batches(NamedTuple):
  """Real batches of π_θ: buffer rows [n, B, ...], the snapshot critic's GAE advantages and
  value targets [n, B], and each batch's g_R [n, ...] under raw and normalised advantages."""

  rows: dict[str, jax.Array]
  advantage: jax.Array
  target: jax.Array
  grad_raw: Params
  grad_norm: Params


def collect(su, state, key: jax.Array, n: int) -> tuple[Any, Batches]:
  """n consecutive loop batches with the frozen policy, value and statistics (as
  `probe.collect_batches`, whose rows and g_R these are) -> (state, Batches)."""
  policy = su.nets.make_policy(state.obs_stats)
  value_fn = su.nets.make_value_fn(state.obs_stats)
  theta = state.agent_params["policy"]

  def one(env_state, k):
    env_state, batch = mg.collect_batch(su, state.replace(env_state=env_state), k)
    adv, targets = mg.real_advantages(
      value_fn,
      state.agent_params["value"],
      batch,
      discount=su.ppo.discount,
      gae_lambda=su.ppo.gae_lambda,
    )
    grad = lambda t: mg.real_policy_gradient(policy, theta, batch, adv, t)
    out = Batches(
      mg.batch_rows(batch), adv.reshape(-1), targets.reshape(-1), grad("raw"), grad("normalised")
    )
    return env_state, out

  env_state, batches = jax.lax.scan(one, state.env_state, jax.random.split(key, n))
  return state.replace(env_state=env_state), batches


def split(b: Batches, at: int) -> tuple[Batches, Batches]:
  return jax.tree.map(lambda x: x[:at], b), jax.tree.map(lambda x: x[at:], b)


def _flat(x: jax.Array) -> jax.Array:
  return x.reshape((-1,) + x.shape[2:])


def _last(tree: Params) -> Params:
  return jax.tree.map(lambda x: x[-1], tree)


def fit_state(state, fit: Batches, mle_weight: float, mg_max_grad_norm: float):
  """The loop's state at its model stage: the fit batches in the buffer, and the MG step's
  settings among the hparams where an `mle` state has none."""
  hp = {
    "mle_weight": jnp.float32(mle_weight),
    "mg_max_grad_norm": jnp.float32(mg_max_grad_norm),
    **state.hparams,
  }
  return state.replace(buffer=buffer_add(state.buffer, jax.tree.map(_flat, fit.rows)), hparams=hp)


def full_strength(su, state):
  """MG at full strength: the Setup with mg_optimizer=separate, mg_weight=1 and normalised
  advantages, and an MGState with a fresh MG Adam state and no clip."""
  su_full = dataclasses.replace(
    su,
    mg=dataclasses.replace(
      su.mg, mg_optimizer="separate", mg_weight=1.0, mg_advantages="normalised"
    ),
  )
  fields = {f.name: getattr(state, f.name) for f in dataclasses.fields(mg.ModelState)}
  fields["hparams"] = {**state.hparams, "mg_max_grad_norm": jnp.float32(0.0)}
  mg_opt = set_learning_rate(
    su.model_optimizer.init(state.model_params), state.hparams["model_learning_rate"]
  )
  zeros = jax.tree.map(jnp.zeros_like, state.agent_params["policy"])
  return su_full, mg.MGState(**fields, real_grad_avg=zeros, mg_opt=mg_opt)


def fit_arm(su, snap, fs, fit: Batches, arm: str, key: jax.Array, max_grad_norm: float):
  """One model arm's fit from the snapshot's model -> (params, MG-step metrics); snap is
  the snapshot's state, fs = `fit_state` of it."""
  if arm in TARGET_ARMS:
    o = TARGET_ARMS[arm]._replace(target_batches=fit.advantage.shape[0])
    data = probe.RealBatches(fit.rows, fit.grad_raw)
    return probe.fit(su, snap, data, o, key, max_grad_norm), {}
  k1, k2 = jax.random.split(key)
  params, opt, _ = mg.nll_steps(su, fs, k1)
  if arm == "nll":
    return params, {}
  s = fs.replace(model_params=params, model_opt=opt)
  if arm == "mg":
    s, metrics = mg_model.fit_model_mg(su, s, k2, _last(fit.grad_raw))
  elif arm == "mg-full":
    su_full, s = full_strength(su, s)
    s, metrics = mg_model.fit_model_mg(su_full, s, k2, _last(fit.grad_norm))
  else:
    raise ValueError(f"arm={arm!r}: unknown; choose one of {', '.join(MODEL_ARMS)}")
  return s.model_params, metrics


def improve(su, fs, model_params: Params, key: jax.Array) -> Params:
  """θ⁺ of the loop's PPO stage on branched rollouts in the given model."""
  state, _ = mg.model_policy_updates(su, fs.replace(model_params=model_params), key)
  return state.agent_params["policy"]


def improve_real(su, fs, fit: Batches, key: jax.Array) -> Params:
  """θ⁺ of one PPO update on the fit batches alone (GAE of the snapshot critic), one
  minibatch per batch: epochs × fit batches minibatch steps."""
  obs, action = _flat(fit.rows["obs"]), _flat(fit.rows["action"])
  adv, target = fit.advantage.reshape(-1), fit.target.reshape(-1)
  batch = PPOBatch(obs, action, adv, target, jnp.ones_like(adv))
  su_real = dataclasses.replace(
    su, ppo=dataclasses.replace(su.ppo, num_minibatches=fit.advantage.shape[0])
  )
  state, _ = mg.policy_update(su_real, fs, batch, key)
  return state.agent_params["policy"]


def alignment(
  su, snap, model_params: Params, held_a: Batches, held_b: Batches, key: jax.Array, draws: int
) -> dict[str, jax.Array]:
  """Out-of-sample alignment of one model (module docstring) and its NLL on set B."""
  starts = _flat(held_a.rows["obs"])
  su_norm = dataclasses.replace(su, mg=dataclasses.replace(su.mg, mg_advantages="normalised"))
  out = {}
  for name, s, grads in (
    ("align_raw", su, held_b.grad_raw),
    ("align_norm", su_norm, held_b.grad_norm),
  ):
    g_true = probe.mean_tree(grads)

    def draw(k, s=s, g_true=g_true):
      a, b = jax.random.split(k)
      start = probe.sample_obs(starts, a, su.mg.mg_rollouts)
      return probe.flat(probe.model_grad(s, snap, model_params, start, b, g_true)[1]["model_grad"])

    g_model = jnp.mean(jax.lax.map(draw, jax.random.split(key, draws)), axis=0)
    out[name] = probe.cos(g_model, probe.flat(g_true))
  rows = jax.tree.map(lambda x: _flat(x[:16]), held_b.rows)
  out["nll"] = model_nll(
    su.model_net,
    snap.obs_stats,
    model_params,
    rows["obs"],
    rows["action"],
    rows["next_obs"],
    rows["reward"],
    su.ppo.action_mode,
  )
  return out


def episodes(info, act_fn, key: jax.Array, num_envs: int) -> jax.Array:
  """`mgjax.envs.evaluate`'s episodes (the same resets, steps and returns [num_envs]), but
  stopped once every episode has ended instead of stepping ended ones to the time limit."""
  state = batched_reset(info.env, jax.random.split(key, num_envs))
  state = state.replace(
    reward=jnp.asarray(state.reward, jnp.float32), done=jnp.zeros((num_envs,), jnp.float32)
  )

  def body(carry):
    t, state, active, returns = carry
    nstate = batched_step(info.env, state, act_fn(state.obs))
    returns = returns + jnp.where(active, nstate.reward, 0.0)
    state = jax.tree.map(lambda x, y: where_done(active, x, y), nstate, state)
    return t + 1, state, active & (nstate.done == 0), returns

  init = (0, state, jnp.ones((num_envs,), bool), jnp.zeros((num_envs,), jnp.float32))
  go = lambda c: (c[0] < info.episode_length) & jnp.any(c[2])
  return jax.lax.while_loop(go, body, init)[3]


def episode_returns(su, stats, thetas: Params, key: jax.Array, num_envs: int) -> jax.Array:
  """Per-episode returns [K, num_envs] of the deterministic policies thetas [K, ...], every
  one on the episodes of the same reset key (common random numbers); one after another, so
  equal policies give equal returns."""

  def one(theta):
    act = mg.make_policy(su, {"agent_params": {"policy": theta}, "obs_stats": stats})
    return episodes(su.env, act, key, num_envs)

  return jax.lax.map(one, thetas)


def surrogate(su, stats, thetas: Params, held: Batches) -> dict[str, jax.Array]:
  """For thetas [K, ...] whose first is θ: the importance-weighted surrogate
  mean[π_θ⁺/π_θ · Â] (Â normalised per batch) and the KL estimate mean[r − 1 − log r],
  r = π_θ⁺/π_θ, on the held-out batches -> {"surrogate": [K], "kl": [K]}."""
  policy = su.nets.make_policy(stats)
  log_prob = jax.vmap(policy.log_prob, in_axes=(None, 0, 0))
  obs, action = held.rows["obs"], held.rows["action"]
  adv = jax.vmap(lambda a: losses.transform_advantages(a, "normalised"))(held.advantage)
  lp = jax.lax.map(lambda th: jax.lax.map(lambda x: log_prob(th, *x), (obs, action)), thetas)
  log_ratio = lp - lp[:1]
  ratio = jnp.exp(log_ratio)
  return {
    "surrogate": jnp.mean(ratio * adv[None], axis=(1, 2)),
    "kl": jnp.mean(ratio - 1.0 - log_ratio, axis=(1, 2)),
  }


@dataclasses.dataclass(frozen=True)
class Settings:
  """The probe's sizes: fit batches (the MG target's too), batches per held-out set (A and
  B), fit keys × PPO keys per model arm, deterministic episodes per evaluation set (A and
  B) and the ĝ_M draws of the alignment."""

  fit_batches: int = 16
  heldout_batches: int = 64
  fit_keys: int = 2
  ppo_keys: int = 2
  episodes: int = 32
  draws: int = 16
  arms: tuple[str, ...] = ARMS


def _tolist(tree) -> Any:
  return jax.tree.map(lambda x: np.asarray(x, np.float64).tolist(), tree)


def policies(su, config, state, data, s: Settings, keys, log=print):
  """Every arm's θ⁺ (model arms [F·P] each, the real arm [P]) and each model arm's fitted
  models' alignment and MG-step metrics -> (θ⁺ stacked in `s.arms`' order, {arm: record}).
  The PPO stage and the alignment run once over every arm's fitted models."""
  fit, held_a, held_b, fs = data
  fit_keys, ppo_keys, akey = keys
  models = [a for a in s.arms if a != REAL_ARM]
  fitted, arms = [], {}
  for arm in models:
    fit_one = lambda sn, f, b, k, arm=arm: fit_arm(su, sn, f, b, arm, k, config.mg_max_grad_norm)
    params, metrics = jax.jit(jax.vmap(fit_one, in_axes=(None, None, None, 0)))(
      state, fs, fit, fit_keys
    )
    fitted.append(params)
    arms[arm] = {"keys": [s.fit_keys, s.ppo_keys], "fit_metrics": _tolist(metrics)}
    log(f"  {arm}: fitted")
  params = jax.tree.map(lambda *x: jnp.concatenate(x), *fitted)  # [arms · F, ...]
  align = jax.vmap(
    lambda sn, p, a, b, k: alignment(su, sn, p, a, b, k, s.draws),
    in_axes=(None, 0, None, None, None),
  )
  aligned = jax.jit(align)(state, params, held_a, held_b, akey)
  ppo = jax.vmap(lambda f, p, k: improve(su, f, p, k), in_axes=(None, None, 0))
  plus = jax.jit(jax.vmap(ppo, in_axes=(None, 0, None)))(fs, params, ppo_keys)  # [arms·F, P]
  real = jax.vmap(lambda f, b, k: improve_real(su, f, b, k), in_axes=(None, None, 0))
  thetas = [jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), plus)]
  if REAL_ARM in s.arms:
    thetas.append(jax.jit(real)(fs, fit, ppo_keys))
    arms[REAL_ARM] = {"keys": [s.ppo_keys]}
  for i, arm in enumerate(models):
    part = jax.tree.map(lambda x: x[i * s.fit_keys : (i + 1) * s.fit_keys], aligned)
    arms[arm]["alignment"] = _tolist(part)
    log(f"  {arm}: " + ", ".join(f"{m} {np.mean(v):.3f}" for m, v in part.items()))
  order = [a for a in s.arms if a != REAL_ARM] + [a for a in s.arms if a == REAL_ARM]
  return jax.tree.map(lambda *x: jnp.concatenate(x), *thetas), {a: arms[a] for a in order}


def run(su, config, state, key: jax.Array, s: Settings, log=print) -> dict[str, Any]:
  """The probe on one snapshot -> {"J": θ's mean return per set, "floor", "arms": {arm:
  {keys, per_key: {dJ_A, dJ_B, surrogate_A, surrogate_B, kl_A, kl_B} shaped keys,
  alignment, fit_metrics}}} (`summarise` adds means, CIs and paired differences)."""
  ckey, fkey, pkey, akey, ekey = jax.random.split(key, 5)
  n = s.fit_batches + 2 * s.heldout_batches  # one program collects all of them
  state, batches = jax.jit(lambda st, k: collect(su, st, k, n))(state, ckey)
  fit, held = split(batches, s.fit_batches)
  held_a, held_b = split(held, s.heldout_batches)
  fs = fit_state(state, fit, config.mle_weight, config.mg_max_grad_norm)
  keys = (jax.random.split(fkey, s.fit_keys), jax.random.split(pkey, s.ppo_keys), akey)
  thetas, arms = policies(su, config, state, (fit, held_a, held_b, fs), s, keys, log)
  theta = state.agent_params["policy"]
  stack = jax.tree.map(lambda t, x: jnp.concatenate([t[None], x]), theta, thetas)
  evaluate = jax.jit(lambda st, th, k: episode_returns(su, st, th, k, s.episodes))
  surr = jax.jit(lambda st, th, h: surrogate(su, st, th, h))
  per = {}
  for name, ek, held_set in zip(SETS, jax.random.split(ekey), (held_a, held_b)):
    returns = np.asarray(evaluate(state.obs_stats, stack, ek), np.float64)
    per[f"dJ_{name}"] = (returns - returns[:1]).mean(axis=1)
    per[f"J_{name}"] = returns[0].mean()
    for m, v in surr(state.obs_stats, stack, held_set).items():
      per[f"{m}_{name}"] = np.asarray(v, np.float64)
    log(f"  set {name}: J(θ) {per[f'J_{name}']:.1f}")
  out = {"J": {n: float(per.pop(f"J_{n}")) for n in SETS}, "theta_check": {}, "arms": arms}
  out["theta_check"] = {m: float(v[0]) for m, v in per.items()}  # θ itself: dJ 0, mean Â
  start = 1
  for arm in arms:  # model arms first, as stacked
    shape = arms[arm]["keys"]
    n = int(np.prod(shape))
    arms[arm]["per_key"] = {m: v[start : start + n].reshape(shape).tolist() for m, v in per.items()}
    start += n
  out["floor"] = floor(fit, held_a, held_b)
  return out


def floor(fit: Batches, held_a: Batches, held_b: Batches) -> dict[str, float]:
  """How well the real policy gradient can be known: cos of the two held-out sets' mean
  g_R (what a noiseless ĝ_M could score, about), and of the fit target with set B's."""
  out = {}
  for conv in ("raw", "norm"):
    g = lambda b: probe.flat(probe.mean_tree(getattr(b, f"grad_{conv}")))
    out[f"sets_A_vs_B_{conv}"] = float(probe.cos(g(held_a), g(held_b)))
    out[f"fit_vs_B_{conv}"] = float(probe.cos(g(fit), g(held_b)))
  return out
