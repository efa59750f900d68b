"""Shared helpers of the exact-gradient checks: flattening, similarities, and means compared
with exact values within a number of standard errors measured from the same samples."""

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

import mgjax

# Tolerance in standard errors: a Gaussian scalar exceeds 4 SE with probability 6e-5. A vector
# error is compared with the RMS standard error √(tr Σ / K), which is no more likely to exceed.
Z = 4.0


def flat(tree):
  return ravel_pytree(tree)[0]


def cos(a, b):
  return a @ b / (jnp.linalg.norm(a) * jnp.linalg.norm(b))


def similarity(g, g_real, name):
  """S(g, g_R) on flat vectors: inner, cosine or l2 (−|g − g_R|²)."""
  if name == "inner":
    return g @ g_real
  if name == "cosine":
    return cos(g, g_real)
  return -jnp.sum((g - g_real) ** 2)


def rms_standard_error(samples):
  """RMS error of the mean of `samples` [K, d] over its d components: √(tr Σ̂ / K)."""
  return jnp.sqrt(jnp.sum(jnp.var(samples, axis=0, ddof=1)) / samples.shape[0])


def assert_mean_close(samples, exact, extra_tol=0.0):
  """|mean − exact| within Z RMS standard errors (plus a stated deterministic allowance);
  returns (error, standard error)."""
  err = jnp.linalg.norm(jnp.mean(samples, axis=0) - exact)
  se = rms_standard_error(samples)
  assert err <= Z * se + extra_tol, (float(err), float(se), float(jnp.linalg.norm(exact)))
  return err, se


def gaussian_log_prob(x, mean, std):
  return jnp.sum(-0.5 * ((x - mean) / std) ** 2 - jnp.log(std) - 0.5 * jnp.log(2 * jnp.pi))


def linear_gaussian_policy() -> mgjax.Policy:
  """a = k s + σ_π ξ (reparameterised); θ = {"k", "log_std"} scalars; obs, action [1]."""

  def sample(theta, obs, key):
    return theta["k"] * obs + jnp.exp(theta["log_std"]) * jax.random.normal(key, obs.shape)

  def log_prob(theta, obs, action):
    return gaussian_log_prob(action, theta["k"] * obs, jnp.exp(theta["log_std"]))

  return mgjax.Policy(sample=sample, log_prob=log_prob)


def linear_model_params(alpha, beta, sigma):
  """φ = {"alpha", "beta", "log_sigma"} of the model s' = α s + β a + σ ε."""
  return {
    "alpha": jnp.array(alpha),
    "beta": jnp.array(beta),
    "log_sigma": jnp.log(jnp.array(sigma)),
  }
