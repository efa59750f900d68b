"""Tests for mgjax.losses, mgjax.buffer and the statistics and model functions of mgjax.networks.

Hand-computed cases carry their arithmetic in comments; every function runs under `jax.jit`.
"""
import jax

jax.config.update("jax_numpy_rank_promotion", "raise")

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from brax.training.agents.ppo import losses as brax_losses  # noqa: E402
from scipy import special, stats  # noqa: E402

from mgjax import buffer, losses, networks  # noqa: E402

_RTOL = 1e-5  # float32 arithmetic


def _random_episode_batch(key, num_steps=20, batch=6):
  """Random [T, B] rewards/values with terminations and truncations never on the same step."""
  kr, kv, kb, kd, kc = jax.random.split(key, 5)
  rewards = jax.random.normal(kr, (num_steps, batch))
  values = jax.random.normal(kv, (num_steps, batch))
  bootstrap = jax.random.normal(kb, (batch,))
  terminations = jax.random.bernoulli(kd, 0.15, (num_steps, batch)).astype(jnp.float32)
  truncations = jax.random.bernoulli(kc, 0.15, (num_steps, batch)).astype(jnp.float32)
  truncations = truncations * (1.0 - terminations)  # as TrainingEnv: a terminal step is no cut
  return rewards, values, bootstrap, terminations, truncations


# ---------------------------------------------------------------------------------------- gae
def test_gae_matches_brax_reference_on_random_inputs():
  discount, lam = 0.97, 0.9
  rewards, values, bootstrap, term, trunc = _random_episode_batch(jax.random.key(0))
  assert float(term.sum()) > 0 and float(trunc.sum()) > 0  # both kinds of episode end occur

  ours = jax.jit(lambda *a: losses.gae(*a, discount=discount, gae_lambda=lam))
  adv, targets = ours(rewards, values, bootstrap, term, trunc)
  vs, brax_adv = jax.jit(brax_losses.compute_gae, static_argnames=("lambda_", "discount"))(
      trunc, term, rewards, values, bootstrap, lambda_=lam, discount=discount)

  assert adv.shape == targets.shape == (20, 6)
  np.testing.assert_allclose(targets, vs, rtol=_RTOL, atol=1e-5)
  np.testing.assert_allclose(adv, targets - values, rtol=_RTOL, atol=1e-5)
  # Convention difference: our advantages are the GAE Â_t = vs_t − V_t (what PPO uses);
  # brax's second output is the one-step look-ahead onto the λ-return,
  #   A^brax_t = (r_t + γ (1 − d_t) vs_{t+1} − V_t) · (1 − c_t),  vs_T = bootstrap_value.
  # Both are built from the same vs, so brax's follows from our targets:
  next_targets = jnp.concatenate([targets[1:], bootstrap[None]], axis=0)
  expected_brax_adv = (rewards + discount * (1.0 - term) * next_targets - values) * (1.0 - trunc)
  np.testing.assert_allclose(brax_adv, expected_brax_adv, rtol=_RTOL, atol=1e-5)
  # ...and the two conventions really differ on these inputs.
  assert not np.allclose(adv, brax_adv, atol=1e-3)


def test_gae_truncations_default_to_none():
  rewards, values, bootstrap, term, _ = _random_episode_batch(jax.random.key(1))
  fn = jax.jit(lambda *a: losses.gae(*a, discount=0.99, gae_lambda=0.95))
  np.testing.assert_array_equal(fn(rewards, values, bootstrap, term)[0],
                                fn(rewards, values, bootstrap, term, jnp.zeros_like(term))[0])


def test_gae_hand_computed():
  # γ = 0.9, λ = 0.5 (γλ = 0.45); step 1 is terminal, step 0 is cut by the time limit in the
  # second case.
  rewards = jnp.array([1.0, 2.0, 3.0])
  values = jnp.array([0.5, 1.0, 1.5])
  bootstrap = jnp.array(2.0)
  term = jnp.array([0.0, 1.0, 0.0])
  fn = jax.jit(lambda *a: losses.gae(*a, discount=0.9, gae_lambda=0.5))

  adv, targets = fn(rewards, values, bootstrap, term)
  # δ2 = 3 + 0.9·2.0 − 1.5 = 3.3                       Â2 = 3.3
  # δ1 = 2 + 0.9·0·1.5 − 1.0 = 1.0 (terminal)            Â1 = 1.0 + 0.45·0·Â2 = 1.0
  # δ0 = 1 + 0.9·1.0 − 0.5 = 1.4                       Â0 = 1.4 + 0.45·1.0 = 1.85
  # targets = V + Â = [2.35, 2.0, 4.8]
  np.testing.assert_allclose(adv, [1.85, 1.0, 3.3], rtol=_RTOL)
  np.testing.assert_allclose(targets, [2.35, 2.0, 4.8], rtol=_RTOL)

  adv, targets = fn(rewards, values, bootstrap, term, jnp.array([1.0, 0.0, 0.0]))
  # A truncated step has no valid successor value: Â0 = 0, target0 = V0 = 0.5; the rest as
  # above.
  np.testing.assert_allclose(adv, [0.0, 1.0, 3.3], rtol=_RTOL)
  np.testing.assert_allclose(targets, [0.5, 2.0, 4.8], rtol=_RTOL)


def test_gae_gradients_kept_only_when_differentiable():
  # No episode ends, γ = 0.9, λ = 0.5: Â_s = Σ_{t≥s} (γλ)^{t−s} δ_t and ∂δ_t/∂r_t = 1, so
  #   ∂(Σ_s Â_s)/∂r_t = Σ_{s≤t} 0.45^{t−s} = [1, 1.45, 1 + 0.45 + 0.2025] = [1, 1.45, 1.6525].
  values, bootstrap, term = jnp.array([0.5, 1.0, 1.5]), jnp.array(2.0), jnp.zeros(3)
  rewards = jnp.array([1.0, 2.0, 3.0])

  def total_advantage(r, differentiable):
    adv, _ = losses.gae(r, values, bootstrap, term, discount=0.9, gae_lambda=0.5,
                        differentiable=differentiable)
    return jnp.sum(adv)

  grad_kept = jax.jit(jax.grad(lambda r: total_advantage(r, True)))(rewards)
  grad_stopped = jax.jit(jax.grad(lambda r: total_advantage(r, False)))(rewards)
  np.testing.assert_allclose(grad_kept, [1.0, 1.45, 1.6525], rtol=_RTOL)
  np.testing.assert_array_equal(grad_stopped, [0.0, 0.0, 0.0])


def test_gae_from_next_values_hand_computed():
  # γ = 0.9, λ = 0.5 (γλ = 0.45). Step 1 hit the time limit: its successor value V(s'_1) = 4.0
  # is that of the pre-reset observation, unlike values[2] = 1.5 (the reset state). Step 2 is
  # terminal.
  rewards = jnp.array([1.0, 2.0, 3.0])
  values = jnp.array([0.5, 1.0, 1.5])
  next_values = jnp.array([1.0, 4.0, 2.0])
  term = jnp.array([0.0, 0.0, 1.0])
  trunc = jnp.array([0.0, 1.0, 0.0])
  adv, targets = jax.jit(lambda *a: losses.gae_from_next_values(
      *a, discount=0.9, gae_lambda=0.5))(rewards, values, next_values, term, trunc)
  # δ2 = 3 + 0.9·0·2.0 − 1.5 = 1.5 (terminal)       Â2 = 1.5
  # δ1 = 2 + 0.9·4.0 − 1.0 = 4.6 (bootstrapped)     Â1 = 4.6 + 0.45·(1 − 1)·Â2 = 4.6
  # δ0 = 1 + 0.9·1.0 − 0.5 = 1.4                    Â0 = 1.4 + 0.45·4.6 = 3.47
  # targets = V + Â = [3.97, 5.6, 3.0]
  np.testing.assert_allclose(adv, [3.47, 4.6, 1.5], rtol=_RTOL)
  np.testing.assert_allclose(targets, [3.97, 5.6, 3.0], rtol=_RTOL)


def test_gae_from_next_values_equals_gae_without_truncation():
  rewards, values, bootstrap, term, _ = _random_episode_batch(jax.random.key(2))
  next_values = jnp.concatenate([values[1:], bootstrap[None]], axis=0)
  no_trunc = jnp.zeros_like(term)
  ours = jax.jit(lambda *a: losses.gae_from_next_values(*a, discount=0.97, gae_lambda=0.9))(
      rewards, values, next_values, term, no_trunc)
  ref = jax.jit(lambda *a: losses.gae(*a, discount=0.97, gae_lambda=0.9))(
      rewards, values, bootstrap, term, no_trunc)
  for x, y in zip(ours, ref):
    np.testing.assert_allclose(x, y, rtol=_RTOL, atol=1e-6)


# ----------------------------------------------------------------------------------- PPO
# ε = 0.2, so the ratio is clipped to [0.8, 1.2].
#   ρ     Â    ρÂ     clip(ρ)Â   min
#   1.5   +1   1.5    1.2        1.2    (clipped above, Â > 0)
#   0.5   +2   1.0    1.6        1.0    (outside the range, but the unclipped term is lower)
#   1.5   −1  −1.5   −1.2       −1.5    (outside the range, unclipped lower)
#   0.5   −2  −1.0   −1.6       −1.6    (clipped below, Â < 0)
#   1.1   +3   3.3    3.3        3.3    (inside the range)
_RATIO = np.array([1.5, 0.5, 1.5, 0.5, 1.1], np.float32)
_ADV = jnp.array([1.0, 2.0, -1.0, -2.0, 3.0])
_OLD = jnp.array([-1.0, -0.5, 0.0, 0.3, -2.0])
_NEW = _OLD + jnp.log(_RATIO)


def test_ppo_policy_loss_hand_computed():
  fn = jax.jit(lambda lp, old, adv, w: losses.ppo_policy_loss(lp, old, adv, 0.2, w))
  fn_unweighted = jax.jit(lambda lp, old, adv: losses.ppo_policy_loss(lp, old, adv, 0.2))
  # L = −mean(min) = −(1.2 + 1.0 − 1.5 − 1.6 + 3.3)/5 = −2.4/5 = −0.48
  np.testing.assert_allclose(fn_unweighted(_NEW, _OLD, _ADV), -0.48, rtol=_RTOL)
  # weights [1, 0, 1, 1, 0]: L = −(1.2 − 1.5 − 1.6)/3 = 1.9/3
  weights = jnp.array([1.0, 0.0, 1.0, 1.0, 0.0])
  np.testing.assert_allclose(fn(_NEW, _OLD, _ADV, weights), 1.9 / 3, rtol=_RTOL)
  np.testing.assert_allclose(fn(_NEW, _OLD, _ADV, jnp.ones(5)), -0.48, rtol=_RTOL)


def test_ppo_policy_loss_gradient_vanishes_where_clipped():
  # ∂(ρÂ)/∂log π = ρÂ where the unclipped term is the minimum, 0 where the clipped one is:
  #   ∂L/∂log π = −[0, 0.5·2, 1.5·(−1), 0, 1.1·3]/5 = [0, −0.2, 0.3, 0, −0.66]
  grad = jax.jit(jax.grad(lambda lp: losses.ppo_policy_loss(lp, _OLD, _ADV, 0.2)))(_NEW)
  np.testing.assert_allclose(grad, [0.0, -0.2, 0.3, 0.0, -0.66], rtol=1e-4, atol=1e-7)


def test_value_loss_hand_computed():
  values, targets = jnp.array([1.0, 2.0, 3.0]), jnp.array([0.0, 2.0, 5.0])
  # squared errors [1, 0, 4]: L = ½·5/3 = 5/6; weights [1, 1, 0]: L = ½·(1 + 0)/2 = 0.25
  np.testing.assert_allclose(jax.jit(losses.value_loss)(values, targets), 5 / 6, rtol=_RTOL)
  np.testing.assert_allclose(
      jax.jit(losses.value_loss)(values, targets, jnp.array([1.0, 1.0, 0.0])), 0.25,
      rtol=_RTOL)


def test_weighted_mean_all_zero_weights_is_zero_not_nan():
  assert float(jax.jit(losses.weighted_mean)(jnp.ones(3), jnp.zeros(3))) == 0.0


# ------------------------------------------------------------------------------ Gaussians
def test_gaussian_nll_matches_scipy():
  km, ks, kx = jax.random.split(jax.random.key(3), 3)
  mean = jax.random.normal(km, (5, 3))
  log_std = jax.random.uniform(ks, (5, 3), minval=-2.0, maxval=1.0)
  x = jax.random.normal(kx, (5, 3))
  nll = jax.jit(losses.gaussian_nll)(mean, log_std, x)
  expected = -stats.norm.logpdf(np.asarray(x), np.asarray(mean), np.exp(log_std)).sum(-1)
  assert nll.shape == (5,)
  np.testing.assert_allclose(nll, expected, rtol=1e-5, atol=1e-5)


def test_gaussian_nll_hand_computed():
  # −log N(1; 0, e²) = ½(1/e² + 2 + log 2π) = ½(0.135335 + 2 + 1.837877) = 1.986606
  np.testing.assert_allclose(
      jax.jit(losses.gaussian_nll)(jnp.zeros(1), jnp.ones(1), jnp.ones(1)), 1.986606,
      rtol=_RTOL)


def test_gaussian_entropy_closed_form():
  log_std = jnp.array([[-1.0, 0.0, 0.5], [0.2, 0.3, -2.0]])
  ent = jax.jit(losses.gaussian_entropy)(log_std)
  # H = Σ_i (log σ_i + ½ log 2πe); row 0: −0.5 + 3·1.418939 = 3.756816
  np.testing.assert_allclose(ent[0], 3.756816, rtol=_RTOL)
  np.testing.assert_allclose(ent, stats.norm.entropy(scale=np.exp(log_std)).sum(-1),
                             rtol=_RTOL)


# ---------------------------------------------------------------------------------- buffer
def _rows(start, n):
  """n rows whose entries encode their index: x = [i, −i], y = i."""
  i = jnp.arange(start, start + n, dtype=jnp.float32)
  return {"x": jnp.stack([i, -i], axis=-1), "y": i}


def test_buffer_add_wraps_around_and_caps_size():
  buf = buffer.buffer_init({"x": jnp.zeros(2), "y": jnp.zeros(())}, capacity=5)
  assert buf.capacity == 5 and buf.data["x"].shape == (5, 2) and int(buf.size) == 0
  add = jax.jit(buffer.buffer_add)

  buf = add(buf, _rows(0, 3))  # rows 0, 1, 2 at slots 0, 1, 2
  assert (int(buf.position), int(buf.size)) == (3, 3)
  buf = add(buf, _rows(3, 4))  # rows 3, 4 at slots 3, 4; rows 5, 6 overwrite the oldest 0, 1
  # position = (3 + 4) mod 5 = 2, size = min(3 + 4, 5) = 5
  assert (int(buf.position), int(buf.size)) == (2, 5)
  np.testing.assert_array_equal(buf.data["y"], [5.0, 6.0, 2.0, 3.0, 4.0])
  np.testing.assert_array_equal(buf.data["x"][:, 1], [-5.0, -6.0, -2.0, -3.0, -4.0])
  buf = add(buf, _rows(7, 5))  # a full batch replaces everything, starting at slot 2
  np.testing.assert_array_equal(buf.data["y"], [10.0, 11.0, 7.0, 8.0, 9.0])
  assert (int(buf.position), int(buf.size)) == (2, 5)

  with pytest.raises(ValueError, match="6 rows"):
    buffer.buffer_add(buf, _rows(0, 6))


def test_buffer_sample_returns_only_valid_rows():
  buf = buffer.buffer_init({"x": jnp.zeros(2), "y": jnp.zeros(())}, capacity=10)
  buf = jax.jit(buffer.buffer_add)(buf, _rows(1, 3))  # slots 0..2 hold rows 1, 2, 3
  sample = jax.jit(buffer.buffer_sample, static_argnums=2)(buf, jax.random.key(4), 500)
  assert sample["x"].shape == (500, 2) and sample["y"].shape == (500,)
  # Never the zero rows of the unfilled slots 3..9; each valid row drawn ≈ 500/3 times.
  np.testing.assert_array_equal(np.unique(sample["y"]), [1.0, 2.0, 3.0])
  np.testing.assert_array_equal(sample["x"][:, 0], sample["y"])  # rows stay whole


# ------------------------------------------------------------------------- observation stats
def test_update_stats_sequential_merges_equal_concatenation():
  keys = jax.random.split(jax.random.key(5), 3)
  batches = [3.0 + 2.0 * jax.random.normal(k, (n, 3)) for k, n in zip(keys, (5, 7, 11))]
  batches[1] = batches[1].reshape(7, 1, 3)  # any leading axes are flattened
  update = jax.jit(networks.update_stats)
  s = networks.init_stats(3)
  for b in batches:
    s = update(s, b)
  everything = np.concatenate([np.asarray(b).reshape(-1, 3) for b in batches])
  assert float(s.count) == 23.0
  np.testing.assert_allclose(s.mean, everything.mean(0), rtol=1e-5)
  np.testing.assert_allclose(s.var, everything.var(0), rtol=1e-4)
  # normalize (unbatched): (x − mean)/√(var + 1e-8), clipped to ±10.
  np.testing.assert_allclose(
      jax.jit(jax.vmap(networks.normalize, in_axes=(None, 0)))(s, everything),
      np.clip((everything - everything.mean(0)) / everything.std(0), -10, 10), rtol=1e-3,
      atol=1e-4)


# -------------------------------------------------------------------------------- the model
def _termination(obs):
  return (obs[0] > 0.0).astype(jnp.float32)


def _model_setup(ensemble_size):
  obs_size, action_size = 4, 2
  net = networks.make_model_network(obs_size, action_size, (16,), ensemble_size)
  params = jax.jit(net.init)(jax.random.key(6))
  data = 1.0 + 3.0 * jax.random.normal(jax.random.key(7), (50, obs_size))
  st = networks.update_stats(networks.init_stats(obs_size), data)
  return net, params, st, networks.make_model(net, st, _termination, "clip")


def test_model_sample_log_prob_finite_and_done_from_termination_fn():
  net, params, _, model = _model_setup(ensemble_size=1)
  n = 64
  ko, ka, ks = jax.random.split(jax.random.key(8), 3)
  obs = jax.random.normal(ko, (n, 4))
  action = 2.0 * jax.random.normal(ka, (n, 2))

  @jax.jit
  def sample_and_score(obs, action, keys):
    nxt, r, done = jax.vmap(model.sample, in_axes=(None, 0, 0, 0))(params, obs, action, keys)
    lp = jax.vmap(model.log_prob, in_axes=(None, 0, 0, 0, 0))(params, obs, action, nxt, r)
    return nxt, r, done, lp

  nxt, r, done, lp = sample_and_score(obs, action, jax.random.split(ks, n))
  assert nxt.shape == (n, 4) and r.shape == (n,) and done.shape == (n,) and lp.shape == (n,)
  assert np.all(np.isfinite(lp))
  np.testing.assert_array_equal(done, jax.vmap(_termination)(nxt))
  assert 0 < float(done.sum()) < n  # the check covers both outcomes
  del net


def test_model_log_prob_is_log_mean_exp_over_ensemble():
  net, params, st, model = _model_setup(ensemble_size=3)
  obs = jnp.array([0.5, -1.0, 2.0, 0.3])
  action = jnp.array([1.7, -0.4])  # the first component is clipped to 1 before the network
  next_obs, reward, _ = jax.jit(model.sample)(params, obs, action, jax.random.key(9))
  log_prob = jax.jit(model.log_prob)(params, obs, action, next_obs, reward)

  # By hand: member e predicts N(μ_e, σ_e²) over (Δobs/σ_obs, reward) from the normalised obs
  # and the clipped action; log M = log (1/3) Σ_e N(target; μ_e, σ_e²).
  mean, log_std = net.apply(params, networks.normalize(st, obs), jnp.array([1.0, -0.4]))
  assert mean.shape == (3, 5)
  obs_std = np.sqrt(np.asarray(st.var) + 1e-8)
  target = np.concatenate([(np.asarray(next_obs) - np.asarray(obs)) / obs_std,
                           [float(reward)]])
  per_member = stats.norm.logpdf(target, np.asarray(mean), np.exp(log_std)).sum(-1)
  expected = special.logsumexp(per_member) - np.log(3.0)
  assert len(set(np.round(per_member, 3))) == 3  # the members disagree: a real mixture
  np.testing.assert_allclose(log_prob, expected, rtol=1e-4, atol=1e-4)
