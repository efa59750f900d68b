"""How noisy is MG's target g_R under each advantage convention? (`experiments/gradient_noise.py
--snapshots`)

From one frozen snapshot of an `mg`/`mle` run, `measure_snapshot` collects real batches of
the training loop's size with the frozen policy and takes g_R = ∇_θ mean[log π(a|s) Â] on
each, with Â from GAE under V_ψ and transformed per batch (`mgjax.transform_advantages`):

  raw          Â as the loop takes it now (`mg_advantages=raw`);
  centred      Â − mean(Â);
  normalised   (Â − mean) / std, PPO's convention;
  critic+...   the same three with ψ first fitted to the real batches' λ-returns
               (`fit_critic`: --critic-steps Adam steps on batches collected for it alone,
               the λ-return targets recomputed with the current ψ every `refresh` steps), so
               that the baseline is a critic of real returns, not of model data.

Per convention: ρ, the mean pairwise cosine of the single-batch g_R (the single-batch
alignment a noiseless ĝ_M could score is about √ρ), and the split-half cosine, the cosine of
the means of two disjoint halves of the batches (mean over random halvings; it estimates the
reliability of a mean of half the batches, the pooled probe's target).
"""

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mgjax import losses
from mgjax.algorithms import mg

CONVENTIONS = ("raw", "centred", "normalised")


@dataclasses.dataclass(frozen=True)
class CriticFit:
  """How `fit_critic` fits ψ: Adam steps, learning rate, minibatch, target refresh."""

  steps: int = 0  # 0: no fit (only the snapshot's ψ)
  batches: int = 16  # real batches collected for the fit alone
  learning_rate: float = 3e-4
  minibatch: int = 256
  refresh: int = 100  # λ-return targets recomputed with the current ψ every this many steps


def collect(su, state, key: jax.Array, n: int):
  """n consecutive training-loop batches with the frozen policy -> (state with advanced
  envs, Transition [n, T, N, ...])."""

  def one(env_state, k):
    return mg.collect_batch(su, state.replace(env_state=env_state), k)

  env_state, batches = jax.lax.scan(one, state.env_state, jax.random.split(key, n))
  return state.replace(env_state=env_state), batches


def _advantages(su, state, value_params, batches):
  """GAE on each batch [n, T, N] with V_value_params -> (advantages, λ-return targets)."""
  value_fn = su.nets.make_value_fn(state.obs_stats)
  return jax.vmap(
    lambda b: mg.real_advantages(
      value_fn, value_params, b, discount=su.ppo.discount, gae_lambda=su.ppo.gae_lambda
    )
  )(batches)


def fit_critic(su, state, batches, key: jax.Array, fit: CriticFit):
  """ψ fitted from the snapshot's to the λ-returns of `batches` [n, T, N] -> (value params,
  value loss at the end)."""
  value_fn = su.nets.make_value_fn(state.obs_stats)
  obs = batches.obs.reshape((-1, batches.obs.shape[-1]))
  opt = optax.adam(fit.learning_rate)

  def loss(params, idx, targets):
    return losses.value_loss(jax.vmap(value_fn, in_axes=(None, 0))(params, obs[idx]), targets[idx])

  def round_(carry, k):
    params, opt_state = carry
    targets = jax.lax.stop_gradient(_advantages(su, state, params, batches)[1]).reshape(-1)

    def step(c, kk):
      p, s = c
      idx = jax.random.randint(kk, (fit.minibatch,), 0, obs.shape[0])
      value, grads = jax.value_and_grad(loss)(p, idx, targets)
      updates, s = opt.update(grads, s, p)
      return (optax.apply_updates(p, updates), s), value

    (params, opt_state), values = jax.lax.scan(
      step, (params, opt_state), jax.random.split(k, fit.refresh)
    )
    return (params, opt_state), values[-1]

  params = state.agent_params["value"]
  rounds = max(fit.steps // fit.refresh, 1)
  (params, _), last = jax.lax.scan(
    round_, (params, opt.init(params)), jax.random.split(key, rounds)
  )
  return params, last[-1]


def gradients(su, state, value_params, batches, transform: str):
  """Each batch's g_R (flat, [n, d]) with Â from `value_params` under `transform`, and the
  raw advantages' mean and standard deviation per batch, and the explained variance of the
  λ-returns by V."""
  policy = su.nets.make_policy(state.obs_stats)
  theta = state.agent_params["policy"]
  adv, targets = _advantages(su, state, value_params, batches)

  def one(b, a):
    g = mg.real_policy_gradient(policy, theta, b, a, transform)
    return jnp.concatenate([jnp.ravel(x) for x in jax.tree.leaves(g)])

  values = targets - adv
  explained = 1.0 - jnp.var(targets - values) / jnp.var(targets)
  stats = {"adv_mean": adv.mean(axis=(1, 2)), "adv_std": adv.std(axis=(1, 2)), "ev": explained}
  return jax.vmap(one)(batches, adv), stats


def noise_stats(g: np.ndarray, halvings: int = 50, seed: int = 0) -> dict[str, float]:
  """ρ (mean pairwise cosine of the rows), the split-half cosine (mean over `halvings`
  random halvings, and for the first half against the second), and the mean row norm."""
  g = np.asarray(g, np.float64)
  n = g.shape[0]
  unit = g / np.linalg.norm(g, axis=1, keepdims=True)
  rho = float((unit @ unit.T)[np.triu_indices(n, 1)].mean())
  cos = lambda a, b: float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
  rng, half = np.random.default_rng(seed), n // 2
  splits = []
  for _ in range(halvings):
    p = rng.permutation(n)
    splits.append(cos(g[p[:half]].mean(0), g[p[half : 2 * half]].mean(0)))
  return {
    "rho": rho,
    "split_half": float(np.mean(splits)),
    "split_half_sd": float(np.std(splits)),
    "split_half_first_second": cos(g[:half].mean(0), g[half : 2 * half].mean(0)),
    "norm": float(np.linalg.norm(g, axis=1).mean()),
  }


def measure_snapshot(
  su, state, key: jax.Array, batches: int, critic: CriticFit, jitted: dict | None = None
) -> dict[str, Any]:
  """Every convention's noise statistics on `batches` fresh real batches
  -> {convention: noise_stats + advantage statistics, "critic": the fit's summary}.
  `jitted` (a dict kept between calls) reuses the compiled programs for another snapshot
  of the same config."""
  j = jitted if jitted is not None else {}
  if not j:
    j["collect"] = jax.jit(lambda st, k, n: collect(su, st, k, n), static_argnums=2)
    j["grads"] = jax.jit(lambda st, v, b, t: gradients(su, st, v, b, t), static_argnums=3)
    j["fit"] = jax.jit(lambda st, b, k: fit_critic(su, st, b, k, critic))
  ckey, mkey, fkey = jax.random.split(key, 3)
  state, measured = j["collect"](state, mkey, batches)
  critics = {"": state.agent_params["value"]}
  out: dict[str, Any] = {}
  if critic.steps > 0:
    state, fit_batches = j["collect"](state, ckey, critic.batches)
    critics["critic+"], last = j["fit"](state, fit_batches, fkey)
    out["critic"] = {**dataclasses.asdict(critic), "final_value_loss": float(last)}
  for prefix, value_params in critics.items():
    for t in CONVENTIONS:
      g, stats = j["grads"](state, value_params, measured, t)
      out[prefix + t] = {
        **noise_stats(np.asarray(g)),
        "adv_mean": float(np.mean(stats["adv_mean"])),
        "adv_std": float(np.mean(stats["adv_std"])),
        "value_explained_variance": float(np.mean(stats["ev"])),
      }
  return out
