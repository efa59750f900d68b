"""The model-gradient loss in code of your own: a toy system, a Flax model, an optax loop.

Uses only mgjax's light core (`mgjax.model_gradient`, `mgjax.losses`, `mgjax.types`, which
import jax and chex and nothing else of mgjax's). The system is a 2-D point mass,
s = (position, velocity) ∈ R⁴, pushed by a force a ∈ R²:

    s' = A s + B a + σ ε,    r(s, a) = −|position|² − 0.1 |a|²,

with a fixed linear-Gaussian policy a = K s + b + σ_π ξ. g_R is the policy gradient on real
rollouts; the model M_φ (a small MLP for the mean of Δs, a learned log-std, the known reward)
is fitted with `model_gradient_loss` alone, so that the policy gradient on its rollouts,
ĝ_M, points along g_R. Three seeds run in one vmapped program; each prints
cos(ĝ_M, g_R) on fresh rollouts as the fit goes on.

    python examples/mg_loss_in_your_code.py
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from mgjax.losses import gae
from mgjax.model_gradient import model_gradient_loss, policy_gradient, rollout
from mgjax.types import Model, Policy

OBS, ACT = 4, 2
DT, NOISE, POLICY_STD = 0.1, 0.05, 0.3
HORIZON = 10
REAL_ROLLOUTS, MG_ROLLOUTS, EVAL_ROLLOUTS = 4096, 256, 4096
STEPS, EVAL_EVERY, LEARNING_RATE = 300, 50, 3e-3
SEEDS = (0, 1, 2)

# ------------------------------------------------------------------------------ the system
A = jnp.block([[jnp.eye(2), DT * jnp.eye(2)], [jnp.zeros((2, 2)), 0.9 * jnp.eye(2)]])
B = jnp.concatenate([jnp.zeros((2, 2)), DT * jnp.eye(2)])


def reward(obs, action):
  return -jnp.sum(obs[:2] ** 2) - 0.1 * jnp.sum(action**2)


def real_step(params, obs, action, key):
  """The true dynamics, as an `mgjax.Model` sample (params unused)."""
  del params
  next_obs = A @ obs + B @ action + NOISE * jax.random.normal(key, (OBS,))
  return next_obs, reward(obs, action), jnp.float32(0.0)  # never terminates


def gaussian_log_prob(x, mean, std):
  return jnp.sum(jax.scipy.stats.norm.logpdf(x, mean, std))


# ------------------------------------------------------------------------------ the policy
def policy_sample(theta, obs, key):
  return theta["K"] @ obs + theta["b"] + POLICY_STD * jax.random.normal(key, (ACT,))


def policy_log_prob(theta, obs, action):
  return gaussian_log_prob(action, theta["K"] @ obs + theta["b"], POLICY_STD)


POLICY = Policy(policy_sample, policy_log_prob)


# ------------------------------------------------------------------------------ the model
class Dynamics(nn.Module):
  """Mean of Δs from (s, a), and a state-independent log-std."""

  @nn.compact
  def __call__(self, obs, action):
    x = jnp.concatenate([obs, action])
    delta = nn.Dense(OBS)(nn.tanh(nn.Dense(32)(nn.tanh(nn.Dense(32)(x)))))
    log_std = self.param("log_std", nn.initializers.constant(jnp.log(NOISE)), (OBS,))
    return obs + delta, log_std


NET = Dynamics()


def model_sample(phi, obs, action, key):
  mean, log_std = NET.apply(phi, obs, action)
  next_obs = mean + jnp.exp(log_std) * jax.random.normal(key, (OBS,))  # reparameterised
  return next_obs, reward(obs, action), jnp.float32(0.0)


def model_log_prob(phi, obs, action, next_obs, reward_):
  del reward_  # the reward is known, not modelled
  mean, log_std = NET.apply(phi, obs, action)
  return gaussian_log_prob(next_obs, mean, jnp.exp(log_std))


MODEL = Model(model_sample, model_log_prob)
REAL = Model(real_step, lambda *args: jnp.float32(0.0))  # only sampled


def zero_value(value_params, obs):
  del value_params, obs
  return jnp.float32(0.0)  # with γ = λ = 1, Â_t is the reward-to-go


# ------------------------------------------------------------------------------ g_R
def real_policy_gradient(theta, start_obs, key):
  """g_R = ∇_θ mean_{t,τ}[log π(a_t|s_t) Â_t] on real rollouts, Â_t the reward-to-go less its
  mean over the rollouts at the same t (a baseline that leaves g_R's mean unchanged)."""
  obs, actions, rewards, dones, _ = rollout(
    None, theta, start_obs, key, policy=POLICY, model=REAL, horizon=HORIZON
  )
  zeros = jnp.zeros_like(rewards)  # V = 0, and no bootstrap after the last step
  to_go, _ = gae(rewards, zeros, zeros[0], dones, discount=1.0, gae_lambda=1.0)
  advantages = to_go - jnp.mean(to_go, axis=1, keepdims=True)
  return policy_gradient(
    theta,
    policy=POLICY,
    obs=obs[:-1].reshape(-1, OBS),
    actions=actions.reshape(-1, ACT),
    advantages=advantages.reshape(-1),
  )


def start_states(key, n):
  return jax.random.normal(key, (n, OBS))


# ------------------------------------------------------------------------------ the fit
# The functions and the settings that shape the program are closed over; arrays are arguments.
mg_loss = functools.partial(
  model_gradient_loss,
  value_params=jnp.float32(0.0),
  policy=POLICY,
  model=MODEL,
  value_fn=zero_value,
  horizon=HORIZON,
  discount=1.0,
  gae_lambda=1.0,
  similarity="cosine",
  estimator="pathwise",
)


def train(key):
  """One seed: a policy, g_R, and STEPS Adam steps on the MG loss -> cos(ĝ_M, g_R) on
  EVAL_ROLLOUTS model rollouts of a fixed evaluation key, before the fit and every
  EVAL_EVERY steps, [STEPS // EVAL_EVERY + 1]."""
  kpol, kreal, kmodel, kfit, keval = jax.random.split(key, 5)
  theta = {"K": 0.3 * jax.random.normal(kpol, (ACT, OBS)), "b": jnp.zeros(ACT)}
  kstart, kreal = jax.random.split(kreal)
  g_real = real_policy_gradient(theta, start_states(kstart, REAL_ROLLOUTS), kreal)
  phi = NET.init(kmodel, jnp.zeros(OBS), jnp.zeros(ACT))
  optimizer = optax.adam(LEARNING_RATE)

  def alignment(phi):
    skey, rkey = jax.random.split(keval)
    _, metrics = mg_loss(
      phi,
      policy_params=theta,
      real_grad=g_real,
      start_obs=start_states(skey, EVAL_ROLLOUTS),
      key=rkey,
    )
    return metrics["cosine"]

  def step(carry, k):
    phi, opt_state = carry
    skey, rkey = jax.random.split(k)
    grads, _ = jax.grad(mg_loss, has_aux=True)(
      phi,
      policy_params=theta,
      real_grad=g_real,
      start_obs=start_states(skey, MG_ROLLOUTS),
      key=rkey,
    )
    updates, opt_state = optimizer.update(grads, opt_state)
    return (optax.apply_updates(phi, updates), opt_state), None

  def block(carry, keys):
    carry, _ = jax.lax.scan(step, carry, keys)
    return carry, alignment(carry[0])

  keys = jax.random.split(kfit, STEPS).reshape(STEPS // EVAL_EVERY, EVAL_EVERY)
  _, cosines = jax.lax.scan(block, (phi, optimizer.init(phi)), keys)
  return jnp.concatenate([alignment(phi)[None], cosines])


def main():
  keys = jnp.stack([jax.random.key(s) for s in SEEDS])
  cosines = jax.jit(jax.vmap(train))(keys)  # [seeds, evaluations]
  print(f"cos(g_M, g_R) every {EVAL_EVERY} MG steps, per seed")
  for seed, row in zip(SEEDS, cosines.tolist()):
    print(f"seed {seed}: " + " ".join(f"{c:+.3f}" for c in row))
  for seed, row in zip(SEEDS, cosines.tolist()):
    print(f"seed {seed} alignment: initial {row[0]:+.3f} final {row[-1]:+.3f}")


if __name__ == "__main__":
  main()
