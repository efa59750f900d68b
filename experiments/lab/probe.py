"""The alignment probe: does a model objective raise the real alignment it optimises?

From one frozen snapshot of an `mg`/`mle` run (policy θ, value ψ, model φ_0, buffer and
envs), the probe collects real batches with the frozen policy, the first `fit_batches` for
fitting and the next `heldout_batches` for measuring only, and then, for each `Objective`,
fits copies of φ_0 for `steps` steps with each of several fit keys and measures every
fitted model on the held-out batches. The held-out batches are split in two disjoint
halves (`heldout_split`): the first half gives the target, the second half ĝ_M's start
states, so that ĝ_M and the target share no noise:

  pooled     cos(mean_d ĝ_M^d, ḡ_R): ĝ_M averaged over `draws` independent draws (each
             mg_rollouts × mg_horizon rollouts from the second half's states) against ḡ_R,
             the mean g_R of the first half's batches: the alignment of the model's policy
             gradient with the real one that the MG objective is after.
  single     mean_i cos(ĝ_M^i, g_R^i), one draw from the second half's batch i against the
             first half's batch i: the alignment one training iteration sees, out of sample
             (bounded by g_R's noise: √ρ for a noiseless ĝ_M).
  nll        the model's NLL on every held-out transition (per dimension).

Its ceiling (`disjoint_floor`) describes the same estimator: a noiseless ĝ_M = E[g_R] scores
cos(E[g_R], ḡ_R) = √R against a mean of m = heldout_batches/2 batches whose reliability R is
estimated by the cosine of the two halves' means, each a mean of m batches.

This replaces the earlier probe, in which ĝ_M started from the same held-out batches that
gave ḡ_R (shared noise that let the pooled alignment pass its ceiling); that measurement is
still available as `ProbeSettings(disjoint=False)` (`--overlap`), with its ceiling from the
split-half cosine and Spearman–Brown (`noise_floor`). `lab.probe_cells` runs the
probe over training seeds and held-out sets and gives CIs over all of them.

One step of an objective is L(φ) = −S-surrogate(ĝ_M(φ), g_target) + λ · NLL(φ; buffer
minibatch), the MG term's gradient clipped to the run's mg_max_grad_norm: the loop's
`mgjax.models.mg_objective` (shared step), run by `mgjax.models.fit`; "NLL only" is
`nll_objective`, `fit_mle`'s step. The fit keys draw the NLL minibatches and the MG rollouts; every
objective uses the same keys, so the per-key difference to NLL only is paired. The levers:

  target_batches  g_target = mean of g_R over that many fit batches (MG start states drawn
                  from all of them), against one batch's g_R as in training;
  rollouts        N rollouts per ĝ_M in each MG step;
  estimator       "score" or "pathwise";
  steps, mle_weight;
  nll_tolerance   > 0: a step whose fitted-data NLL would exceed the start model's by more
                  than this (nats per dimension) is replaced by the NLL-only step.
g_R and ĝ_M take the snapshot's advantage convention (`mg_advantages`).
"""

import dataclasses
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import optax
from lab.probe_floor import (  # noqa: F401  (the floor and ceiling)
  disjoint_floor,
  heldout_split,
  noise_floor,
  pooled_ceiling,
)
from lab.probe_report import (  # noqa: F401  (the probe's comparison, tables and figures)
  METRICS,
  check_finite,
  compare,
  mean_ci,
  plot_probe,
  probe_table,
  separated,
)
from lab.snapshots import (  # noqa: F401  (snapshots of a run to probe)
  load_snapshot,
  load_snapshot_meta,
  make_snapshots,
  save_snapshot,
)

from mgjax.algorithms import mg, mg_model
from mgjax.buffer import buffer_add, buffer_sample
from mgjax.models import fitting
from mgjax.models.nll import model_nll
from mgjax.types import Params


class Objective(NamedTuple):
  """One model objective of the probe (see the module docstring for each lever)."""

  name: str
  mg: bool = False  # the MG term on (False: NLL only)
  mle_weight: float = 1.0  # λ, the NLL gradient's weight beside the MG term
  steps: int = 100  # model steps from the snapshot's model
  estimator: str = "score"  # score | pathwise
  rollouts: int = 256  # N rollouts per ĝ_M in an MG step
  target_batches: int = 1  # fit batches whose mean g_R is the MG target
  nll_tolerance: float = 0.0  # > 0: keep the fitted-data NLL within this of the start's


def objective_label(o: Objective) -> str:
  """The objective's settings in one line, for tables."""
  if not o.mg:
    return f"NLL only, {o.steps} steps"
  parts = [
    f"λ={o.mle_weight:g}",
    f"{o.steps} steps",
    o.estimator,
    f"N={o.rollouts}",
    f"target of {o.target_batches} batch{'es' if o.target_batches > 1 else ''}",
  ]
  if o.nll_tolerance > 0:
    parts.append(f"NLL tolerance {o.nll_tolerance:g}")
  return "MG, " + ", ".join(parts)


# The default study: NLL only against MG at the training loop's settings, its weights, and
# each lever alone; `steps=500` arms come with their own NLL-only arm.
DEFAULT_OBJECTIVES = (
  Objective("nll"),
  Objective("mg", mg=True),
  Objective("mg-w0.1", mg=True, mle_weight=0.1),
  Objective("mg-only", mg=True, mle_weight=0.0),
  Objective("mg-target16", mg=True, target_batches=16),
  Objective("mg-only-target16", mg=True, mle_weight=0.0, target_batches=16),
  Objective("mg-n2048", mg=True, rollouts=2048),
  Objective("mg-pathwise", mg=True, estimator="pathwise"),
  Objective("mg-pathwise-target16", mg=True, estimator="pathwise", target_batches=16),
  Objective("mg-target16-tol", mg=True, mle_weight=0.0, target_batches=16, nll_tolerance=0.05),
  Objective("nll-500", steps=500),
  Objective("mg-500-target16", mg=True, steps=500, target_batches=16),
)
# Targets of more batches, for snapshots whose g_R is noisier (needs --fit-batches 64).
EXTRA_OBJECTIVES = (
  Objective("mg-target64", mg=True, target_batches=64),
  Objective("mg-pathwise-target64", mg=True, estimator="pathwise", target_batches=64),
)


class RealBatches(NamedTuple):
  """Real batches collected with the frozen policy: rows [n, T·N, ...] in the buffers'
  schema and each batch's g_R (a policy-shaped pytree, leaves [n, ...])."""

  rows: dict[str, jax.Array]
  real_grad: Params


def collect_batches(su, state, key: jax.Array, n: int) -> tuple[Any, RealBatches]:
  """n consecutive training-loop batches with the frozen policy, value and statistics,
  each with its g_R exactly as `mg.iteration` computes it (the run's `mg_advantages`)
  -> (state with advanced envs, RealBatches)."""
  policy = su.nets.make_policy(state.obs_stats)
  value_fn = su.nets.make_value_fn(state.obs_stats)
  theta = state.agent_params["policy"]

  def one(env_state, k):
    env_state, batch = mg.collect_batch(su, state.replace(env_state=env_state), k)
    adv, _ = mg.real_advantages(
      value_fn,
      state.agent_params["value"],
      batch,
      discount=su.ppo.discount,
      gae_lambda=su.ppo.gae_lambda,
    )
    g_r = mg.real_policy_gradient(policy, theta, batch, adv, su.mg.mg_advantages)
    return env_state, (mg.batch_rows(batch), g_r)

  env_state, (rows, grads) = jax.lax.scan(one, state.env_state, jax.random.split(key, n))
  return state.replace(env_state=env_state), RealBatches(rows, grads)


def mean_tree(tree: Params, n: int | None = None) -> Params:
  return jax.tree.map(lambda x: jnp.mean(x[:n], axis=0), tree)


def flat(tree: Params) -> jax.Array:
  return jnp.concatenate([jnp.ravel(x) for x in jax.tree.leaves(tree)])


def cos(a: jax.Array, b: jax.Array) -> jax.Array:
  return jnp.vdot(a, b) / (jnp.linalg.norm(a) * jnp.linalg.norm(b) + 1e-12)


def _flatten_rows(rows: dict[str, jax.Array]) -> dict[str, jax.Array]:
  return jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), rows)


def model_grad(
  su,
  state,
  model_params: Params,
  start_obs: jax.Array,
  key: jax.Array,
  real_grad: Params,
  *,
  estimator: str = "score",
):
  """The loop's MG loss (`mg_model.mg_loss_from`) of φ = model_params on rollouts from
  start_obs -> (loss, metrics)."""
  return mg_model.mg_loss_from(su, state, model_params, start_obs, key, real_grad, estimator)


def sample_obs(obs: jax.Array, key: jax.Array, n: int) -> jax.Array:
  return obs[jax.random.randint(key, (n,), 0, obs.shape[0])]


def fit_objective(
  su, state, fit_data: RealBatches, objective: Objective, max_grad_norm: float
) -> fitting.ModelObjective:
  """The probe's `objective` as a `ModelObjective` from the snapshot's state, on the
  snapshot's buffer grown by the fit batches: `nll_objective`, or `mg_objective` against the
  mean g_R of `target_batches` fit batches, its rollouts from their states; with
  nll_tolerance > 0 a step is kept only where the fitted data's NLL stays within it of the
  start model's, else the NLL-only step from the same state and minibatch."""
  o = objective
  rows = _flatten_rows(fit_data.rows)
  buffer = buffer_add(state.buffer, rows)
  nll = su.nll(state.obs_stats)
  nll_loss = lambda p, k: nll(p, buffer_sample(buffer, k, su.fit.mle_batch))
  only_nll = fitting.nll_objective(nll_loss, su.model_optimizer)
  if not o.mg:
    return only_nll
  target = mean_tree(fit_data.real_grad, o.target_batches)
  starts = rows["obs"][: o.target_batches * su.run.batch_steps]

  def mg_loss(p, k):
    skey, rkey = jax.random.split(k)
    start_obs = sample_obs(starts, skey, o.rollouts)
    return model_grad(su, state, p, start_obs, rkey, target, estimator=o.estimator)

  with_mg = fitting.mg_objective(
    mg_loss,
    nll_loss,
    su.model_optimizer,
    mle_weight=jnp.float32(o.mle_weight),
    max_norm=jnp.float32(max_grad_norm),
  )
  if o.nll_tolerance <= 0:
    return with_mg
  held_in = jax.tree.map(lambda x: x[:4096], rows)
  bound = nll(state.model_params, held_in) + o.nll_tolerance

  def update(params, opt, key):
    updates, new_opt, metrics = with_mg.update(params, opt, key)
    plain, plain_opt, _ = only_nll.update(params, opt.model_opt, jax.random.split(key)[1])
    inside = nll(optax.apply_updates(params, updates), held_in) <= bound
    pick = lambda a, b: jax.tree.map(lambda x, y: jnp.where(inside, x, y), a, b)
    return (
      pick(updates, plain),
      new_opt._replace(model_opt=pick(new_opt.model_opt, plain_opt)),
      metrics,
    )

  return fitting.ModelObjective(with_mg.init, update)


def fit(
  su, state, fit_data: RealBatches, objective: Objective, key: jax.Array, max_grad_norm: float
) -> Params:
  """`objective.steps` steps of `fit_objective` (`mgjax.models.fit`) from the snapshot's
  model and model optimiser state -> the fitted model parameters."""
  model_objective = fit_objective(su, state, fit_data, objective, max_grad_norm)
  opt = state.model_opt if not objective.mg else fitting.MGObjectiveState(state.model_opt)
  params, _, _ = fitting.fit(model_objective, state.model_params, opt, key, objective.steps)
  return params


def measure(
  su,
  state,
  model_params: Params,
  heldout: RealBatches,
  key: jax.Array,
  draws: int,
  disjoint: bool = True,
) -> dict[str, jax.Array]:
  """pooled and single-batch alignment and held-out NLL of one model (module docstring):
  the target from the first half of the held-out batches, ĝ_M's start states from the
  second (both from all of them with disjoint=False)."""
  rows = heldout.rows
  target_idx, start_idx = heldout_split(rows["obs"].shape[0], disjoint)
  targets = jax.tree.map(lambda x: x[target_idx], heldout.real_grad)
  start_obs = rows["obs"][start_idx]  # [m, T·N, obs]
  all_obs = start_obs.reshape((-1,) + start_obs.shape[2:])
  g_true = mean_tree(targets)
  pkey, skey = jax.random.split(key)
  m = su.mg.mg_rollouts

  def pooled_draw(k):
    a, b = jax.random.split(k)
    return flat(
      model_grad(su, state, model_params, sample_obs(all_obs, a, m), b, g_true)[1]["model_grad"]
    )

  g_pooled = jnp.mean(jax.lax.map(pooled_draw, jax.random.split(pkey, draws)), axis=0)

  def single(args):
    obs, g_r, k = args
    a, b = jax.random.split(k)
    g_m = model_grad(su, state, model_params, sample_obs(obs, a, m), b, g_r)[1]["model_grad"]
    return cos(flat(g_m), flat(g_r))

  keys = jax.random.split(skey, len(start_idx))
  singles = jax.lax.map(single, (start_obs, targets, keys))
  every = _flatten_rows(rows)
  nll = model_nll(
    su.model_net,
    state.obs_stats,
    model_params,
    every["obs"],
    every["action"],
    every["next_obs"],
    every["reward"],
    su.ppo.action_mode,
  )
  return {"pooled": cos(g_pooled, flat(g_true)), "single": jnp.mean(singles), "nll": nll}


@dataclasses.dataclass(frozen=True)
class ProbeSettings:
  """The probe's sizes: fit and held-out batches, ĝ_M draws for the pooled alignment and
  the fit keys a CI is taken over; disjoint=False measures as the earlier probe did (ĝ_M's
  start states from the same held-out batches as the target)."""

  fit_batches: int = 16
  heldout_batches: int = 32
  draws: int = 32
  fit_keys: int = 6
  disjoint: bool = True


class Programs(NamedTuple):
  """The probe's compiled programs, with the snapshot's state and the data as arguments, so
  that one compilation serves every snapshot, training seed and held-out set of a config."""

  collect: Callable  # (state, key, n) -> (state, RealBatches)
  measure: Callable  # (models [k, ...], state, heldout, key) -> {metric: [k]}
  fit: Callable  # (objective, keys, state, fit_data) -> models [k, ...]


def programs(su, settings: ProbeSettings, max_grad_norm: float) -> Programs:
  s, cache = settings, {}
  measure_all = jax.jit(
    jax.vmap(
      lambda p, st, ho, k: measure(su, st, p, ho, k, s.draws, s.disjoint),
      in_axes=(0, None, None, None),
    )
  )

  def fit_all(o: Objective, keys, state, fit_data):
    if o not in cache:
      cache[o] = jax.jit(
        jax.vmap(lambda k, st, fd: fit(su, st, fd, o, k, max_grad_norm), in_axes=(0, None, None))
      )
    return cache[o](keys, state, fit_data)

  collect = jax.jit(lambda st, k, n: collect_batches(su, st, k, n), static_argnums=2)
  return Programs(collect, measure_all, fit_all)


def run_probe(
  su,
  state,
  objectives: Sequence[Objective],
  key: jax.Array,
  settings: ProbeSettings,
  max_grad_norm: float,
  log=print,
  progs: Programs | None = None,
) -> dict[str, Any]:
  """Every objective fitted with `settings.fit_keys` keys and measured on held-out data
  -> {"floor", "start", "objectives": {name: {label, per_key, mean/CI per metric,
  paired difference to the NLL-only arm of the same steps}}}. `progs` (from `programs`
  with the same su and settings) saves compiling again for another snapshot or set."""
  s = settings
  need = max(o.target_batches for o in objectives)
  if need > s.fit_batches:
    raise ValueError(f"target_batches={need}: more than fit_batches={s.fit_batches}")
  if s.disjoint and s.heldout_batches < 2:
    raise ValueError(f"heldout_batches={s.heldout_batches}: disjoint halves need at least 2")
  progs = progs or programs(su, s, max_grad_norm)
  ckey, mkey, fkey = jax.random.split(key, 3)
  state, fit_data = progs.collect(state, ckey, s.fit_batches)
  state, heldout = progs.collect(state, jax.random.fold_in(ckey, 1), s.heldout_batches)
  measure_all = lambda models: progs.measure(models, state, heldout, mkey)
  start = jax.tree.map(lambda x: x[None], state.model_params)
  floor = disjoint_floor if s.disjoint else noise_floor
  out = {
    "floor": floor(fit_data, heldout),
    "start": {k: float(v[0]) for k, v in measure_all(start).items()},
    "objectives": {},
  }
  log(f"floor {out['floor']}\nstart {out['start']}")
  keys = jax.random.split(fkey, s.fit_keys)
  fit_all = lambda o, k: progs.fit(o, k, state, fit_data)
  out["objectives"] = compare(objectives, None, measure_all, keys, objective_label, log, fit_all)
  return out
