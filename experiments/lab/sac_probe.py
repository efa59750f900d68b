"""The alignment probe in MBPO's loop: does a model objective raise the real alignment of
SAC's actor-loss gradient? (`mbpo` and `mg-sac` snapshots; `lab.probe` is the
PPO loop's.)

SAC's g_R needs no fresh env steps: it is the actor-loss gradient on real buffer states with
the snapshot's critics and α (`mg_sac_model.actor_gradient_on`). So the probe splits the
snapshot's real transitions at random into a fit half and a held-out half. Fitting sees the
fit half only: its transitions give the ensemble's NLL minibatches, its states the MG
targets and start states. Every fitted ensemble is then measured on the held-out half:

  pooled  cos(mean_d ĝ_M^d, ḡ_R): ĝ_M (through the elites, as the loop's MG term) averaged
          over `draws` draws, each from mg_rollouts held-out start states, against ḡ_R, the
          mean g_R of the held-out chunks (all held-out states, cut into chunks of
          mg_rollouts·mg_horizon).
  single  mean over chunks of cos(ĝ_M^i, g_R^i): ĝ_M from the first mg_rollouts of chunk
          i's states against chunk i's own g_R, as the loop's logged `model_grad_cosine`.
  nll     the elites' mean NLL on every held-out transition.

One step of an objective is the loop's (`mg_sac_model.fit_model_mg`): L(φ) =
−S-surrogate(ĝ_M(φ), g_target) + λ · Σ_e NLL_e(member minibatches), the MG term's gradient
clipped to the run's mg_max_grad_norm, by the snapshot's model optimiser; "NLL only" is the
NLL term alone, from the snapshot's ensemble and optimiser state. The levers:

  target_states  0: each step's own g_R on mg_rollouts·mg_horizon fit states (the loop's
                 default); M > 0: one g_R on M fit states held over the steps (the loop's
                 real_grad_states = M);
  steps, mle_weight.

The floor (`probe.noise_floor` on the held-out and fit chunks' g_R) gives the pooled
ceiling and the cosine of the loop's targets with ḡ_R; the result has the shape of
`probe.run_probe`'s, so `probe.plot_probe` and `probe.probe_table` draw and table it.
"""

import dataclasses
from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from lab import probe

from mgjax.algorithms import mg_sac_model
from mgjax.buffer import ReplayBuffer, buffer_sample
from mgjax.models import fitting
from mgjax.models.ensemble import member_minibatches
from mgjax.models.nll import ensemble_nll_loss, model_nll
from mgjax.types import Params


class SACObjective(NamedTuple):
  """One model objective of the SAC-family probe (see the module docstring)."""

  name: str
  mg: bool = False  # the MG term on (False: NLL only)
  mle_weight: float = 1.0  # λ, the NLL gradient's weight beside the MG term
  steps: int = 100  # model steps from the snapshot's ensemble
  target_states: int = 0  # 0: each step's g_R on R·H fit states; M: one g_R on M of them


def objective_label(o: SACObjective) -> str:
  """The objective's settings in one line, for tables."""
  if not o.mg:
    return f"NLL only, {o.steps} steps"
  target = f"target on {o.target_states} states" if o.target_states else "the loop's target"
  return f"MG, λ={o.mle_weight:g}, {o.steps} steps, {target}"


# NLL only against MG at the loop's settings, without the NLL, and with the denoised target
# of 16 chunks' states (hopper's mg_rollouts·mg_horizon = 2560: 40,960 states).
SAC_OBJECTIVES = (
  SACObjective("nll"),
  SACObjective("mg", mg=True),
  SACObjective("mg-only", mg=True, mle_weight=0.0),
  SACObjective("mg-target16", mg=True, target_states=-16),
  SACObjective("mg-only-target16", mg=True, mle_weight=0.0, target_states=-16),
)


def resolve(o: SACObjective, chunk: int) -> SACObjective:
  """A negative target_states −k is k chunks of `chunk` = mg_rollouts·mg_horizon states."""
  return o._replace(target_states=-o.target_states * chunk) if o.target_states < 0 else o


class HeldOut(NamedTuple):
  """The held-out half: its transitions, its states cut into chunks [C, R·H, obs_size] and
  each chunk's g_R (leaves [C, ...])."""

  rows: dict[str, jax.Array]
  chunk_obs: jax.Array
  chunk_grads: Params


@dataclasses.dataclass(frozen=True)
class SACProbeSettings:
  """The probe's sizes: ĝ_M draws for the pooled alignment, the fit keys a CI is taken
  over, and the fit chunks whose g_R the floor compares with ḡ_R."""

  draws: int = 32
  fit_keys: int = 6
  fit_chunks: int = 16


def split_buffer(buffer: ReplayBuffer, key: jax.Array) -> tuple[ReplayBuffer, dict[str, Any]]:
  """The valid rows of a (concrete) real buffer in a random order, cut in two: (a buffer of
  the first half, the second half's rows)."""
  size = int(buffer.size)
  if size < 4:
    raise ValueError(f"buffer size={size}: too few real transitions to split")
  order = np.asarray(jax.random.permutation(key, size))
  rows = jax.tree.map(lambda d: np.asarray(d)[:size][order], buffer.data)
  half = size // 2
  fit_rows = jax.tree.map(lambda d: jnp.asarray(d[:half]), rows)
  fit = ReplayBuffer(fit_rows, jnp.zeros((), jnp.int32), jnp.asarray(half, jnp.int32))
  return fit, jax.tree.map(lambda d: jnp.asarray(d[half:]), rows)


def chunk_gradients(su, state, obs: jax.Array, key: jax.Array):
  """obs cut into chunks of mg_rollouts·mg_horizon states (the last partial one dropped)
  and each chunk's g_R -> (chunk_obs [C, R·H, ...], grads)."""
  size = su.mg.mg_rollouts * su.mg.mg_horizon
  c = obs.shape[0] // size
  if c < 2:
    raise ValueError(
      f"{obs.shape[0]} states: fewer than 2 chunks of mg_rollouts·mg_horizon = {size}"
    )
  chunk_obs = obs[: c * size].reshape((c, size) + obs.shape[1:])
  grads = jax.lax.map(
    lambda a: mg_sac_model.actor_gradient_on(su, state, a[0], a[1]),
    (chunk_obs, jax.random.split(key, c)),
  )
  return chunk_obs, grads


def heldout_nll(su, state, params: Params, rows: dict[str, jax.Array]) -> jax.Array:
  """The elites' mean NLL (per dimension) on the rows."""

  def one(e):
    p = jax.tree.map(lambda x: x[e][None], params)
    return model_nll(
      su.model_net,
      state.obs_stats,
      p,
      rows["obs"],
      rows["action"],
      rows["next_obs"],
      rows["reward"],
      "clip",
    )

  return jnp.mean(jax.vmap(one)(state.elites))


def fit(
  su, state, fit_buffer: ReplayBuffer, objective: SACObjective, key: jax.Array, max_norm: float
) -> Params:
  """`objective.steps` steps (`mgjax.models.fit`) from the snapshot's ensemble and optimiser
  state, on the fit half only -> the fitted ensemble parameters: `nll_objective` of the
  members' NLL, or `mg_objective` with it (the target, where `target_states` > 0, the
  actor gradient on that many fit-half states, drawn once)."""
  o = objective
  s = state.replace(buffer=fit_buffer)  # mg_loss draws its states from the fit half
  target = None
  if o.mg and o.target_states:
    key, tkey = jax.random.split(key)
    skey, gkey = jax.random.split(tkey)
    obs = buffer_sample(fit_buffer, skey, o.target_states)["obs"]
    target = mg_sac_model.actor_gradient_on(su, state, obs, gkey)

  def nll_loss(params, k):
    minibatches = member_minibatches(fit_buffer, k, su.fit.members, su.fit.batch_size)
    return ensemble_nll_loss(params, minibatches, net=su.model_net, stats=state.obs_stats)

  if not o.mg:
    model_objective, opt = fitting.nll_objective(nll_loss, su.model_optimizer), state.model_opt
  else:
    model_objective = fitting.mg_objective(
      lambda p, k: mg_sac_model.mg_loss(su, s, p, k, target),
      nll_loss,
      su.model_optimizer,
      mle_weight=jnp.float32(o.mle_weight),
      max_norm=jnp.float32(max_norm),
    )
    opt = fitting.MGObjectiveState(state.model_opt)
  params, _, _ = fitting.fit(model_objective, state.model_params, opt, key, o.steps)
  return params


def measure(
  su, state, params: Params, heldout: HeldOut, key: jax.Array, draws: int
) -> dict[str, jax.Array]:
  """pooled and single alignment and held-out NLL of one ensemble (module docstring)."""
  g_true = probe.mean_tree(heldout.chunk_grads)
  pkey, skey = jax.random.split(key)
  r = su.mg.mg_rollouts

  def model_grad(start, k, target):
    return probe.flat(
      mg_sac_model.mg_loss_from(su, state, params, start, k, target)[1]["model_grad"]
    )

  def pooled_draw(k):
    a, b = jax.random.split(k)
    return model_grad(probe.sample_obs(heldout.rows["obs"], a, r), b, g_true)

  g_pooled = jnp.mean(jax.lax.map(pooled_draw, jax.random.split(pkey, draws)), axis=0)
  c = heldout.chunk_obs.shape[0]
  singles = jax.lax.map(
    lambda a: probe.cos(model_grad(a[0][:r], a[2], a[1]), probe.flat(a[1])),
    (heldout.chunk_obs, heldout.chunk_grads, jax.random.split(skey, c)),
  )
  return {
    "pooled": probe.cos(g_pooled, probe.flat(g_true)),
    "single": jnp.mean(singles),
    "nll": heldout_nll(su, state, params, heldout.rows),
  }


def run_probe(
  su,
  state,
  objectives: Sequence[SACObjective],
  key: jax.Array,
  settings: SACProbeSettings,
  max_grad_norm: float,
  log=print,
) -> dict[str, Any]:
  """Every objective fitted with `settings.fit_keys` keys on the fit half and measured on
  the held-out half -> {"floor", "start", "objectives", "split"}, as `probe.run_probe`."""
  s = settings
  chunk = su.mg.mg_rollouts * su.mg.mg_horizon
  objectives = [resolve(o, chunk) for o in objectives]
  skey, ckey, mkey, fkey = jax.random.split(key, 4)
  fit_buffer, held_rows = split_buffer(state.buffer, skey)
  grads = jax.jit(lambda obs, k: chunk_gradients(su, state, obs, k))  # halves: one shape
  chunk_obs, chunk_grads = grads(held_rows["obs"], ckey)
  heldout = HeldOut(held_rows, chunk_obs, chunk_grads)
  _, fit_grads = grads(fit_buffer.data["obs"], jax.random.fold_in(ckey, 1))
  fit_grads = jax.tree.map(lambda x: x[: s.fit_chunks], fit_grads)
  measure_j = jax.jit(jax.vmap(lambda p: measure(su, state, p, heldout, mkey, s.draws)))
  start = jax.tree.map(lambda x: x[None], state.model_params)
  out = {
    "split": {"fit": int(fit_buffer.size), "heldout": int(held_rows["obs"].shape[0])},
    "floor": probe.noise_floor(
      probe.RealBatches(None, fit_grads), probe.RealBatches(None, chunk_grads)
    ),
    "start": {k: float(v[0]) for k, v in measure_j(start).items()},
  }
  log(f"split {out['split']}\nfloor {out['floor']}\nstart {out['start']}")
  fit_one = lambda o, k: fit(su, state, fit_buffer, o, k, max_grad_norm)
  keys = jax.random.split(fkey, s.fit_keys)
  out["objectives"] = probe.compare(objectives, fit_one, measure_j, keys, objective_label, log)
  return out
