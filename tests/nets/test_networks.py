"""Tests for mgjax.nets (running observation statistics, the model network and the Model
built on it).

Hand-computed cases carry their arithmetic in comments; every function runs under `jax.jit`.
"""

import jax
import jax.numpy as jnp
import numpy as np
from scipy import special, stats

from mgjax import models, nets


# ------------------------------------------------------------------------- observation stats
def test_update_stats_sequential_merges_equal_concatenation():
  keys = jax.random.split(jax.random.key(5), 3)
  batches = [3.0 + 2.0 * jax.random.normal(k, (n, 3)) for k, n in zip(keys, (5, 7, 11))]
  batches[1] = batches[1].reshape(7, 1, 3)  # any leading axes are flattened
  update = jax.jit(nets.update_stats)
  s = nets.init_stats(3)
  for b in batches:
    s = update(s, b)
  everything = np.concatenate([np.asarray(b).reshape(-1, 3) for b in batches])
  assert float(s.count) == 23.0
  np.testing.assert_allclose(s.mean, everything.mean(0), rtol=1e-5)
  np.testing.assert_allclose(s.var, everything.var(0), rtol=1e-4)
  # normalize (unbatched): (x − mean)/√(var + 1e-8), clipped to ±10.
  np.testing.assert_allclose(
    jax.jit(jax.vmap(nets.normalize, in_axes=(None, 0)))(s, everything),
    np.clip((everything - everything.mean(0)) / everything.std(0), -10, 10),
    rtol=1e-3,
    atol=1e-4,
  )


# -------------------------------------------------------------------------------- the model
def _termination(obs):
  return (obs[0] > 0.0).astype(jnp.float32)


def _model_setup(ensemble_size):
  obs_size, action_size = 4, 2
  net = nets.make_model_network(obs_size, action_size, (16,), ensemble_size)
  params = jax.jit(net.init)(jax.random.key(6))
  data = 1.0 + 3.0 * jax.random.normal(jax.random.key(7), (50, obs_size))
  st = nets.update_stats(nets.init_stats(obs_size), data)
  return net, params, st, nets.make_model(net, st, _termination, "clip")


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
  mean, log_std = net.apply(params, nets.normalize(st, obs), jnp.array([1.0, -0.4]))
  assert mean.shape == (3, 5)
  obs_std = np.sqrt(np.asarray(st.var) + 1e-8)
  target = np.concatenate([(np.asarray(next_obs) - np.asarray(obs)) / obs_std, [float(reward)]])
  per_member = stats.norm.logpdf(target, np.asarray(mean), np.exp(log_std)).sum(-1)
  expected = special.logsumexp(per_member) - np.log(3.0)
  assert len(set(np.round(per_member, 3))) == 3  # the members disagree: a real mixture
  np.testing.assert_allclose(log_prob, expected, rtol=1e-4, atol=1e-4)


def test_model_nll_is_the_per_dimension_nll_averaged_over_members():
  net, params, st, model = _model_setup(ensemble_size=3)
  b = 16
  ko, ka, kn, kr = jax.random.split(jax.random.key(10), 4)
  obs = jax.random.normal(ko, (b, 4))
  action = 2.0 * jax.random.normal(ka, (b, 2))
  next_obs = obs + 0.1 * jax.random.normal(kn, (b, 4))
  reward = jax.random.normal(kr, (b,))
  args = (params, obs, action, next_obs, reward, "clip")
  per_member = jax.jit(models.member_nll, static_argnums=(0, 7))(net, st, *args)
  nll = jax.jit(models.model_nll, static_argnums=(0, 7))(net, st, *args)
  assert per_member.shape == (3,)
  # Member e alone is a one-member model: its log-density summed over the D = 4 + 1 output
  # dimensions is model.log_prob, so member_nll_e = −mean_b log p_e / 5. (The Model reads
  # the member count from the params it is given: one member, one Gaussian.)
  log_prob = jax.jit(jax.vmap(model.log_prob, in_axes=(None, 0, 0, 0, 0)))
  for e in range(3):
    member = jax.tree.map(lambda x: x[e : e + 1], params)
    lp = log_prob(member, obs, action, next_obs, reward)
    np.testing.assert_allclose(per_member[e], -np.mean(lp) / 5.0, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(nll, np.mean(per_member), rtol=1e-6)
  # nll_loss adds the PETS bound penalty 0.01 · (Σ max_log_std − Σ min_log_std) / B.
  rows = {"obs": obs, "action": action, "reward": reward, "next_obs": next_obs}
  loss = jax.jit(lambda p, r: models.nll_loss(p, r, net=net, stats=st, action_mode="clip"))(
    params, rows
  )
  penalty = jax.jit(models.log_std_bound_penalty)(params)
  assert float(penalty) != 0.0
  np.testing.assert_allclose(loss, nll + 0.01 * penalty / b, rtol=1e-6)
