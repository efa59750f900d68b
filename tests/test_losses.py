"""Tests for mgjax.losses: GAE, the PPO and value losses, Gaussian log-likelihood and entropy.

Hand-computed cases carry their arithmetic in comments; every function runs under `jax.jit`.
"""

import jax
import jax.numpy as jnp
import numpy as np
from brax.training.agents.ppo import losses as brax_losses
from scipy import stats

from mgjax import losses

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
    trunc, term, rewards, values, bootstrap, lambda_=lam, discount=discount
  )

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
  np.testing.assert_array_equal(
    fn(rewards, values, bootstrap, term)[0],
    fn(rewards, values, bootstrap, term, jnp.zeros_like(term))[0],
  )


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
    adv, _ = losses.gae(
      r, values, bootstrap, term, discount=0.9, gae_lambda=0.5, differentiable=differentiable
    )
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
  adv, targets = jax.jit(lambda *a: losses.gae_from_next_values(*a, discount=0.9, gae_lambda=0.5))(
    rewards, values, next_values, term, trunc
  )
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
    rewards, values, next_values, term, no_trunc
  )
  ref = jax.jit(lambda *a: losses.gae(*a, discount=0.97, gae_lambda=0.9))(
    rewards, values, bootstrap, term, no_trunc
  )
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
    jax.jit(losses.value_loss)(values, targets, jnp.array([1.0, 1.0, 0.0])), 0.25, rtol=_RTOL
  )


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
    jax.jit(losses.gaussian_nll)(jnp.zeros(1), jnp.ones(1), jnp.ones(1)), 1.986606, rtol=_RTOL
  )


def test_gaussian_entropy_closed_form():
  log_std = jnp.array([[-1.0, 0.0, 0.5], [0.2, 0.3, -2.0]])
  ent = jax.jit(losses.gaussian_entropy)(log_std)
  # H = Σ_i (log σ_i + ½ log 2πe); row 0: −0.5 + 3·1.418939 = 3.756816
  np.testing.assert_allclose(ent[0], 3.756816, rtol=_RTOL)
  np.testing.assert_allclose(ent, stats.norm.entropy(scale=np.exp(log_std)).sum(-1), rtol=_RTOL)
