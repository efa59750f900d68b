"""Tests for mgjax.agents.sac: tanh-Gaussian densities, the three SAC losses, Polyak averaging
and the composed update. Hand-computed cases carry their arithmetic in comments; functions run
under `jax.jit`. Networks are tiny and batches small: these run on CPU in seconds.
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from mgjax.agents import sac
from mgjax.types import Transition

_RTOL = 1e-5  # float32 arithmetic
_TINY_LOG_ALPHA = -30.0  # α ≈ 9e-14: the entropy term vanishes next to O(1) Q-values


# ------------------------------------------------------------------- tiny closures
def _linear_q(params, obs, action):
  """Two critics Q_j(s, a) = w_j s + v_j a + b_j (1-D obs and action) -> [2]."""
  return params["w"] * obs[0] + params["v"] * action[0] + params["b"]


def _const_actor(params, obs):
  """μ(s) = params["mean"], log σ(s) = params["log_std"], whatever s."""
  del obs
  return params["mean"], params["log_std"]


def _q_params(w, v, b):
  return {"w": jnp.array(w), "v": jnp.array(v), "b": jnp.array(b)}


def _actor_params(mean, log_std):
  return {"mean": jnp.array([mean]), "log_std": jnp.array([log_std])}


# Online and target critics of the hand-computed cases.
_Q = _q_params([1.0, 0.0], [2.0, 1.0], [0.0, 1.0])
_TARGET_Q = _q_params([1.0, 2.0], [1.0, 1.0], [0.5, 0.0])


def _batch(termination=(0.0, 0.0), truncation=(0.0, 0.0)):
  return Transition(
    obs=jnp.array([[1.0], [2.0]]),
    action=jnp.array([[0.5], [-0.5]]),
    reward=jnp.array([1.0, 2.0]),
    next_obs=jnp.array([[0.0], [1.0]]),
    termination=jnp.array(termination),
    truncation=jnp.array(truncation),
    extras={},
  )


def _critic(q_params, target_q_params, actor_params, log_alpha, batch, key=jax.random.key(0)):
  return sac.critic_loss(
    q_params,
    target_q_params=target_q_params,
    actor_params=actor_params,
    log_alpha=log_alpha,
    batch=batch,
    key=key,
    q_fn=_linear_q,
    actor_fn=_const_actor,
    discount=0.5,
  )[0]


def _actor(actor_params, q_params, log_alpha, obs, key=jax.random.key(0)):
  return sac.actor_loss(
    actor_params,
    q_params=q_params,
    log_alpha=log_alpha,
    obs=obs,
    key=key,
    q_fn=_linear_q,
    actor_fn=_const_actor,
  )


# ------------------------------------------------------------------- tanh-Gaussian
def test_tanh_gaussian_log_prob_hand_computed():
  # μ = 0.2, σ = 0.5, u = 1: log N(1; 0.2, 0.5) = −½ (0.8/0.5)² − log 0.5 − ½ log 2π
  #   = −1.28 + 0.693147 − 0.918939 = −1.505792
  # log(1 − tanh²(1)) = log(1 − 0.761594²) = log(0.419974) = −0.867562
  # log π(tanh 1) = −1.505792 + 0.867562 = −0.638230
  log_prob = jax.jit(sac.tanh_gaussian_log_prob)(
    jnp.array([0.2]), jnp.array([math.log(0.5)]), jnp.array([1.0])
  )
  direct = (
    -0.5 * (0.8 / 0.5) ** 2
    - math.log(0.5)
    - 0.5 * math.log(2 * math.pi)
    - math.log(1.0 - math.tanh(1.0) ** 2)
  )
  np.testing.assert_allclose(log_prob, direct, rtol=_RTOL)
  np.testing.assert_allclose(log_prob, -0.638230, rtol=1e-5)
  # Dimensions add: two copies of the same 1-D case give twice the log-density.
  log_prob_2d = jax.jit(sac.tanh_gaussian_log_prob)(
    jnp.array([0.2, 0.2]), jnp.full((2,), math.log(0.5)), jnp.array([1.0, 1.0])
  )
  np.testing.assert_allclose(log_prob_2d, 2 * direct, rtol=_RTOL)


def test_tanh_gaussian_density_integrates_to_one():
  # p_A(a) = exp(log π(a)) with u = atanh(a); trapezoid over a in (−1, 1). The density is
  # N(atanh a)/(1 − a²) → 0 at the ends for σ = 0.8, so the open-interval grid loses nothing.
  mean, log_std = jnp.array([0.3]), jnp.array([math.log(0.8)])
  a = np.linspace(-1.0 + 1e-6, 1.0 - 1e-6, 200_001)
  u = jnp.asarray(np.arctanh(a), jnp.float32)[:, None]
  log_p = jax.jit(jax.vmap(sac.tanh_gaussian_log_prob, in_axes=(None, None, 0)))(mean, log_std, u)
  np.testing.assert_allclose(np.trapezoid(np.exp(np.asarray(log_p, np.float64)), a), 1.0, atol=2e-3)


def test_tanh_gaussian_large_u_is_finite_and_exact():
  # For |u| ≫ 1, log(1 − tanh² u) = −2 log cosh u = −2(|u| − log 2) up to e^{−2|u|}; the
  # naive log(1 − tanh(u)²) would be log 0 = −inf in float32.
  # u = 20, μ = 0, σ = 1: log π = −½·400 − ½ log 2π + 2(20 − log 2) = −200 − 0.918939 + 38.613706
  for u in (20.0, -20.0):
    log_prob = jax.jit(sac.tanh_gaussian_log_prob)(jnp.zeros(1), jnp.zeros(1), jnp.array([u]))
    np.testing.assert_allclose(log_prob, -200.0 - 0.918939 + 38.613706, rtol=1e-5)
  # Sampling at a saturated mean: a rounds to ±1 but log π and its gradient stay finite.
  fn = jax.jit(lambda m: sac.tanh_gaussian_sample(m, jnp.zeros(1), jax.random.key(0)))
  action, log_prob = fn(jnp.array([30.0]))
  grad = jax.jit(jax.grad(lambda m: fn(m)[1]))(jnp.array([30.0]))
  assert float(action[0]) == 1.0 and np.isfinite(log_prob) and np.all(np.isfinite(grad))


def test_tanh_gaussian_sample_is_reparameterised_tanh():
  mean, log_std, key = jnp.array([0.1, -0.4]), jnp.array([-1.0, 0.5]), jax.random.key(3)
  action, log_prob = jax.jit(sac.tanh_gaussian_sample)(mean, log_std, key)
  u = mean + jnp.exp(log_std) * jax.random.normal(key, (2,))
  np.testing.assert_allclose(action, np.tanh(u), rtol=_RTOL)
  np.testing.assert_allclose(log_prob, sac.tanh_gaussian_log_prob(mean, log_std, u), rtol=_RTOL)
  np.testing.assert_allclose(sac.deterministic_action(mean), np.tanh(mean), rtol=_RTOL)
  assert sac.default_target_entropy(6) == -6.0


# ------------------------------------------------------------------- networks
def test_networks_shapes_bounds_and_independent_critics():
  actor = sac.make_actor_network(3, 2, hidden=(8, 8))
  q_net = sac.make_q_network(3, 2, hidden=(8, 8), num_q=3)
  actor_params, q_params = actor.init(jax.random.key(0)), q_net.init(jax.random.key(1))
  mean, log_std = jax.jit(actor.apply)(actor_params, 1e4 * jnp.array([1.0, -1.0, 1.0]))
  assert mean.shape == log_std.shape == (2,)
  assert np.all(log_std >= sac.LOG_STD_MIN) and np.all(log_std <= sac.LOG_STD_MAX)
  q = jax.jit(q_net.apply)(q_params, jnp.ones(3), jnp.ones(2))
  assert q.shape == (3,) and len(set(np.asarray(q).tolist())) == 3  # three distinct critics


def test_std_heads_hand_computed():
  raw = jnp.array([0.0, 2.0, -30.0])
  # bounded: log σ = −5 + 3.5 (tanh x + 1): −1.5 at 0, e.g. −5 + 3.5 (tanh 2 + 1) at 2.
  np.testing.assert_allclose(
    sac.std_head_log_std(raw, "bounded"),
    -5.0 + 3.5 * (np.tanh([0.0, 2.0, -30.0]) + 1.0),
    rtol=_RTOL,
  )
  # softplus: σ = log(1 + eˣ) + 1e-5: log 2 + 1e-5 at 0, and about 1e-5 far below 0.
  sigma = np.exp(np.asarray(sac.std_head_log_std(raw, "softplus"), np.float64))
  np.testing.assert_allclose(sigma[:2], np.log1p(np.exp([0.0, 2.0])) + 1e-5, rtol=1e-6)
  np.testing.assert_allclose(sigma[2], 1e-5, rtol=1e-4)


def test_network_options_activation_std_head_and_zero_critic_output():
  obs, act = jnp.array([0.3, -1.0, 2.0]), jnp.array([0.5, -0.5])
  q_zero = sac.make_q_network(3, 2, hidden=(8,), activation="silu", out_scale=0.0)
  np.testing.assert_array_equal(q_zero.apply(q_zero.init(jax.random.key(1)), obs, act), 0.0)
  # One hidden layer by hand: the SiLU actor's output is W2 silu(W1 x + b1) + b2, then the
  # softplus head on its second half.
  actor = sac.make_actor_network(3, 2, hidden=(8,), activation="silu", std_head="softplus")
  params = actor.init(jax.random.key(2))
  l0, l1 = (params["params"]["MLP_0"][f"Dense_{i}"] for i in range(2))
  out = jax.nn.silu(obs @ l0["kernel"] + l0["bias"]) @ l1["kernel"] + l1["bias"]
  mean, log_std = actor.apply(params, obs)
  np.testing.assert_allclose(mean, out[:2], rtol=1e-6)
  np.testing.assert_allclose(np.exp(log_std), jax.nn.softplus(out[2:]) + 1e-5, rtol=1e-5)


# ------------------------------------------------------------------- critic loss
def test_critic_loss_hand_computed():
  # σ = e^{−20} and α ≈ 1e-13: a' = tanh(0) = 0 and the entropy term vanishes. γ = 0.5.
  # Target critics at (s', a' = 0): s' = 0: Q̄ = [0.5, 0] → min 0; s' = 1: Q̄ = [1.5, 2] → 1.5.
  #   y = [1 + 0.5·0, 2 + 0.5·1.5] = [1, 2.75]
  # Online critics: (s=1, a=0.5): Q = [1 + 1, 0.5 + 1] = [2, 1.5];
  #                 (s=2, a=−0.5): Q = [2 − 1, −0.5 + 1] = [1, 0.5]
  # errors [1, 0.5] → 1.25 and [−1.75, −2.25] → 3.0625 + 5.0625 = 8.125
  # L = ½ · (1.25 + 8.125)/2 = 2.34375
  actor = _actor_params(0.0, -20.0)
  fn = jax.jit(_critic)
  loss = fn(_Q, _TARGET_Q, actor, _TINY_LOG_ALPHA, _batch())
  np.testing.assert_allclose(loss, 2.34375, rtol=_RTOL)
  # Termination of step 1 drops its bootstrap: y1 = 2, errors [−1, −1.5] → 3.25,
  #   L = ½ · (1.25 + 3.25)/2 = 1.125.
  loss = fn(_Q, _TARGET_Q, actor, _TINY_LOG_ALPHA, _batch(termination=(0.0, 1.0)))
  np.testing.assert_allclose(loss, 1.125, rtol=_RTOL)
  # Truncation does not: next_obs is the true final observation, so it bootstraps as usual.
  loss = fn(_Q, _TARGET_Q, actor, _TINY_LOG_ALPHA, _batch(truncation=(0.0, 1.0)))
  np.testing.assert_allclose(loss, 2.34375, rtol=_RTOL)


def test_critic_loss_entropy_term_with_same_keys():
  # α = 0.5, σ = e^{−1}: reproduce a'_b, log π(a'_b|s'_b) with the documented keys split(key, B).
  key, log_alpha = jax.random.key(7), math.log(0.5)
  actor = _actor_params(0.3, -1.0)
  mean = jnp.broadcast_to(actor["mean"], (2, 1))
  log_std = jnp.broadcast_to(actor["log_std"], (2, 1))
  a_next, logp = jax.vmap(sac.tanh_gaussian_sample)(mean, log_std, jax.random.split(key, 2))
  a_next, logp = np.asarray(a_next[:, 0], np.float64), np.asarray(logp, np.float64)
  s_next, s, a = np.array([0.0, 1.0]), np.array([1.0, 2.0]), np.array([0.5, -0.5])
  w_t, v_t, b_t = np.array([1.0, 2.0]), np.array([1.0, 1.0]), np.array([0.5, 0.0])
  w, v, b = np.array([1.0, 0.0]), np.array([2.0, 1.0]), np.array([0.0, 1.0])
  q_next = (w_t[None] * s_next[:, None] + v_t[None] * a_next[:, None] + b_t[None]).min(1)
  y = np.array([1.0, 2.0]) + 0.5 * (q_next - 0.5 * logp)
  q = w[None] * s[:, None] + v[None] * a[:, None] + b[None]
  expected = 0.5 * np.mean(np.sum((q - y[:, None]) ** 2, axis=1))
  loss = jax.jit(_critic)(_Q, _TARGET_Q, actor, log_alpha, _batch(), key)
  np.testing.assert_allclose(loss, expected, rtol=_RTOL)
  # ... and the entropy term matters here: α ≈ 0 gives another loss.
  assert (
    abs(float(jax.jit(_critic)(_Q, _TARGET_Q, actor, _TINY_LOG_ALPHA, _batch(), key)) - expected)
    > 1e-2
  )


def test_critic_loss_gradient_stops_at_the_target():
  actor, log_alpha, batch = _actor_params(0.3, -1.0), 0.0, _batch()
  # Target params do change the loss ...
  other_target = _q_params([0.0, 0.0], [0.0, 0.0], [3.0, 3.0])
  fn = jax.jit(_critic)
  assert (
    abs(
      float(fn(_Q, _TARGET_Q, actor, log_alpha, batch))
      - float(fn(_Q, other_target, actor, log_alpha, batch))
    )
    > 1e-2
  )
  # ... but the target y is under stop_gradient: no gradient into target critics, actor or α.
  g_target = jax.jit(jax.grad(lambda t: _critic(_Q, t, actor, log_alpha, batch)))(_TARGET_Q)
  g_actor = jax.jit(jax.grad(lambda p: _critic(_Q, _TARGET_Q, p, log_alpha, batch)))(actor)
  g_alpha = jax.jit(jax.grad(lambda la: _critic(_Q, _TARGET_Q, actor, la, batch)))(log_alpha)
  for leaf in jax.tree.leaves((g_target, g_actor, g_alpha)):
    np.testing.assert_array_equal(leaf, np.zeros_like(leaf))
  # The online critics do get one: hand case of test_critic_loss_hand_computed, ∂L/∂b_j =
  # mean_b (Q_j − y) = [(1 − 1.75)/2, (0.5 − 2.25)/2] = [−0.375, −0.875].
  g_q = jax.jit(
    jax.grad(lambda q: _critic(q, _TARGET_Q, _actor_params(0.0, -20.0), _TINY_LOG_ALPHA, batch))
  )(_Q)
  np.testing.assert_allclose(g_q["b"], [-0.375, -0.875], rtol=_RTOL)


# ------------------------------------------------------------------- actor loss
def test_actor_loss_hand_computed_and_gradient():
  # μ = atanh(0.5), σ = e^{−20}, α ≈ 1e-13: a = 0.5 for both states.
  # s = 1: Q = [1 + 2·0.5 + 0, 0 + 0.5 + 1] = [2, 1.5];  s = 2: Q = [2 + 1, 1.5] = [3, 1.5]
  # L = −mean(min_j Q_j) = −1.5.  The min is critic 2 (v = 1) in both, so
  # ∂L/∂μ = −v_2 · (1 − tanh² μ) = −1 · (1 − 0.25) = −0.75.
  obs = jnp.array([[1.0], [2.0]])
  actor = _actor_params(math.atanh(0.5), -20.0)
  loss_fn = jax.jit(lambda p: _actor(p, _Q, _TINY_LOG_ALPHA, obs))
  loss, metrics = loss_fn(actor)
  np.testing.assert_allclose(loss, -1.5, rtol=_RTOL)
  grad = jax.jit(jax.grad(lambda p: loss_fn(p)[0]))(actor)
  np.testing.assert_allclose(grad["mean"], [-0.75], rtol=1e-4)
  np.testing.assert_allclose(metrics["entropy"], -metrics["log_prob"], rtol=_RTOL)


def test_actor_loss_treats_alpha_as_constant():
  obs = jnp.array([[1.0], [2.0]])
  actor = _actor_params(0.2, -0.5)
  fn = jax.jit(lambda la: _actor(actor, _Q, la, obs)[0])
  # α enters the value: L(log α = 0) − L(log α = log 2) = (1 − 2) mean log π = −mean log π ...
  _, metrics = jax.jit(lambda la: _actor(actor, _Q, la, obs))(0.0)
  np.testing.assert_allclose(fn(0.0) - fn(math.log(2.0)), -metrics["log_prob"], rtol=1e-4)
  # ... but under stop_gradient: the actor loss does not train the temperature.
  np.testing.assert_array_equal(jax.jit(jax.grad(fn))(0.0), 0.0)
  # The entropy term does reach the actor: with Q removed (all-zero critics),
  # L = mean log π, and ∂L/∂log σ ≠ 0.
  zero_q = _q_params([0.0, 0.0], [0.0, 0.0], [0.0, 0.0])
  g = jax.jit(jax.grad(lambda p: _actor(p, zero_q, 0.0, obs)[0]))(actor)
  assert abs(float(g["log_std"][0])) > 1e-2


def test_actor_objective_is_the_scalar_per_state_loss_actor_loss_averages():
  # What actor_model_gradient_loss takes as actor_loss: a scalar per state, whose mean over
  # the keys jax.random.split(key, B) is actor_loss.
  obs = jnp.array([[1.0], [2.0]])
  actor, key = _actor_params(0.2, -0.5), jax.random.key(3)
  objective = functools.partial(
    sac.actor_objective, q_params=_Q, log_alpha=0.0, q_fn=_linear_q, actor_fn=_const_actor
  )
  assert objective(actor, obs[0], key).shape == ()
  per_state = jax.vmap(objective, in_axes=(None, 0, 0))(actor, obs, jax.random.split(key, 2))
  np.testing.assert_allclose(jnp.mean(per_state), _actor(actor, _Q, 0.0, obs, key)[0], rtol=_RTOL)


def test_tanh_gaussian_policy_samples_and_inverts_the_squashing():
  # sample is tanh_gaussian_sample's action; log_prob(sample) its log π, through arctanh.
  mean, log_std = jnp.array([0.3, -0.2]), jnp.array([-0.5, -1.0])
  policy = sac.tanh_gaussian_policy(lambda params, obs: (params * mean, log_std))
  key = jax.random.key(4)
  action = jax.jit(policy.sample)(1.0, jnp.zeros(3), key)
  expected, expected_log_prob = sac.tanh_gaussian_sample(mean, log_std, key)
  np.testing.assert_allclose(action, expected, rtol=_RTOL)
  np.testing.assert_allclose(
    jax.jit(policy.log_prob)(1.0, jnp.zeros(3), action), expected_log_prob, rtol=1e-4
  )
  # Actions on the boundary (a deterministic env action) stay finite.
  assert np.isfinite(policy.log_prob(1.0, jnp.zeros(3), jnp.array([1.0, -1.0])))


# ------------------------------------------------------------------- alpha loss, Polyak
def test_alpha_loss_value_and_sign():
  fn = jax.jit(lambda la, lp: sac.alpha_loss(la, log_prob=lp, target_entropy=-1.0)[0])
  grad = jax.jit(jax.grad(fn))
  # log π = [1, 3]: entropy −2 < target −1. mean(log π + H̄) = 2 − 1 = 1, α = 2:
  #   L = −2 · 1 = −2,  ∂L/∂log α = −α · 1 = −2 < 0 → descent raises α.
  log_prob = jnp.array([1.0, 3.0])
  np.testing.assert_allclose(fn(math.log(2.0), log_prob), -2.0, rtol=_RTOL)
  np.testing.assert_allclose(grad(math.log(2.0), log_prob), -2.0, rtol=_RTOL)
  # log π = [−3, −1]: entropy 2 > −1. mean(log π + H̄) = −2 − 1 = −3: L = 6, ∂L/∂log α = 6 > 0.
  log_prob = jnp.array([-3.0, -1.0])
  np.testing.assert_allclose(fn(math.log(2.0), log_prob), 6.0, rtol=_RTOL)
  np.testing.assert_allclose(grad(math.log(2.0), log_prob), 6.0, rtol=_RTOL)
  # The log-probs are data: no gradient into them (hence none into the actor).
  g_lp = jax.jit(jax.grad(fn, argnums=1))(0.0, log_prob)
  np.testing.assert_array_equal(g_lp, [0.0, 0.0])


def test_polyak_update_hand_computed():
  # τ = 0.1: 0.1·[1, 20] + 0.9·[0, 10] = [0.1, 11];  0.1·4 + 0.9·2 = 2.2
  target = {"a": jnp.array([0.0, 10.0]), "b": {"c": jnp.array(2.0)}}
  online = {"a": jnp.array([1.0, 20.0]), "b": {"c": jnp.array(4.0)}}
  out = jax.jit(sac.polyak_update, static_argnums=2)(target, online, 0.1)
  np.testing.assert_allclose(out["a"], [0.1, 11.0], rtol=_RTOL)
  np.testing.assert_allclose(out["b"]["c"], 2.2, rtol=_RTOL)


# ------------------------------------------------------------------- composed update
def _setup(obs_size, action_size, hidden, learning_rate, seed=0):
  actor_net = sac.make_actor_network(obs_size, action_size, hidden)
  q_net = sac.make_q_network(obs_size, action_size, hidden)
  opts = sac.make_optimizers(learning_rate)
  params = sac.init_params(actor_net, q_net, jax.random.key(seed))
  update = functools.partial(
    sac.sac_update,
    q_fn=q_net.apply,
    actor_fn=actor_net.apply,
    optimizers=opts,
    target_entropy=sac.default_target_entropy(action_size),
  )
  return actor_net, params, sac.init_opt_state(opts, params), update


def test_sac_update_runs_and_moves_targets_by_tau():
  _, params, opt_state, update = _setup(3, 2, (16, 16), 1e-3)
  k1, k2, k3, k4 = jax.random.split(jax.random.key(1), 4)
  batch = Transition(
    obs=jax.random.normal(k1, (8, 3)),
    action=jax.random.uniform(k2, (8, 2), minval=-1.0, maxval=1.0),
    reward=jax.random.normal(k3, (8,)),
    next_obs=jax.random.normal(k4, (8, 3)),
    termination=jnp.zeros(8).at[0].set(1.0),
    truncation=jnp.zeros(8),
    extras={},
  )
  step = jax.jit(lambda p, o, k: update(p, o, batch, k, tau=0.05))
  new, _, metrics = step(params, opt_state, jax.random.key(2))
  assert set(metrics) == {"critic_loss", "actor_loss", "alpha_loss", "alpha", "entropy", "q_mean"}
  assert all(np.isfinite(v) for v in metrics.values())
  # Initially target = q; after one step target' = target + τ (q' − target), to float32
  # rounding of the O(1) weights (the moves themselves are O(τ · lr) = 5e-5).
  for t_new, t_old, q_new in zip(
    jax.tree.leaves(new.target_q), jax.tree.leaves(params.target_q), jax.tree.leaves(new.q)
  ):
    t_old, q_new = np.asarray(t_old, np.float64), np.asarray(q_new, np.float64)
    np.testing.assert_allclose(t_new, t_old + 0.05 * (q_new - t_old), rtol=2e-7, atol=1e-8)
    assert not np.allclose(t_new, t_old + 0.1 * (q_new - t_old), rtol=2e-7, atol=1e-8)
  assert any(np.any(a != b) for a, b in zip(jax.tree.leaves(new.q), jax.tree.leaves(params.q)))
  assert float(new.log_alpha) != float(params.log_alpha)
  # vmaps over keys: different keys, different actor updates.
  keys = jnp.stack([jax.random.key(3), jax.random.key(4)])
  vnew, _, vmetrics = jax.jit(jax.vmap(step, in_axes=(None, None, 0)))(params, opt_state, keys)
  assert vmetrics["actor_loss"].shape == (2,)
  leaf = jax.tree.leaves(vnew.actor)[0]
  assert not np.allclose(leaf[0], leaf[1])


def test_sac_learns_one_step_bandit():
  # 1-step bandit, constant obs, r(a) = −(a − 0.5)², every step terminal; data from uniform
  # actions in [−1, 1]. The soft-optimal policy concentrates around a = 0.5.
  actor_net, params, opt_state, update = _setup(1, 1, (32, 32), 3e-3)
  obs = jnp.ones((64, 1))

  def step(carry, key):
    params, opt_state = carry
    data_key, update_key = jax.random.split(key)
    action = jax.random.uniform(data_key, (64, 1), minval=-1.0, maxval=1.0)
    batch = Transition(
      obs=obs,
      action=action,
      reward=-jnp.square(action[:, 0] - 0.5),
      next_obs=obs,
      termination=jnp.ones(64),
      truncation=jnp.zeros(64),
      extras={},
    )
    params, opt_state, metrics = update(params, opt_state, batch, update_key)
    return (params, opt_state), metrics

  train = jax.jit(lambda p, o, keys: jax.lax.scan(step, (p, o), keys))
  (params, _), metrics = train(params, opt_state, jax.random.split(jax.random.key(0), 400))
  mean, _ = actor_net.apply(params.actor, jnp.ones(1))
  action = float(sac.deterministic_action(mean)[0])
  assert np.all(np.isfinite(metrics["critic_loss"]))
  assert abs(action - 0.5) < 0.15, action
  assert float(metrics["alpha"][-1]) < 1.0  # entropy above −1 at the start: α fell from 1
