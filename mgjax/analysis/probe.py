"""The alignment probe: does a model objective raise the real alignment it optimises?

From one frozen snapshot of an `mg`/`mle` run (policy θ, value ψ, model φ_0, buffer and
envs), the probe collects real batches with the frozen policy, the first `fit_batches` for
fitting and the next `heldout_batches` for measuring only, and then, for each `Objective`,
fits copies of φ_0 for `steps` steps with each of several fit keys and measures every
fitted model on the held-out batches:

  pooled     cos(mean_d ĝ_M^d, ḡ_R): ĝ_M averaged over `draws` independent draws (each
             mg_rollouts × mg_horizon rollouts from held-out states) against ḡ_R, the mean
             g_R of all held-out batches. Both sides' noise averaged away: the alignment of
             the model's policy gradient with the real one that the MG objective is after.
  single     mean_i cos(ĝ_M^i, g_R^i), one draw from batch i's states against batch i's own
             g_R: the alignment one training iteration sees (bounded by g_R's noise).
  nll        the model's NLL on every held-out transition (per dimension).

One step of an objective is L(φ) = −S-surrogate(ĝ_M(φ), g_target) + λ · NLL(φ; buffer
minibatch), the MG term's gradient clipped to the run's mg_max_grad_norm, exactly as
`mgjax.algorithms.mg_model.fit_model_mg` steps; "NLL only" is λ = 1 without the MG term
(`fit_mle`'s step). The fit keys draw the NLL minibatches and the MG rollouts; every
objective uses the same keys, so the per-key difference to NLL only is paired. The levers:

  target_batches  g_target = mean of g_R over that many fit batches (MG start states drawn
                  from all of them), against one batch's g_R as in training;
  rollouts        N rollouts per ĝ_M in each MG step;
  estimator       "score" or "pathwise";
  steps, mle_weight;
  nll_tolerance   > 0: a step whose fitted-data NLL would exceed the start model's by more
                  than this (nats per dimension) is replaced by the NLL-only step.
"""

import dataclasses
import math
from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from mgjax.algorithms import mg, mg_model
from mgjax.buffer import buffer_add, buffer_sample
from mgjax.models.fitting import combine_model_grads
from mgjax.models.nll import model_nll
from mgjax.optim import apply_gradients
from mgjax.stats import stratified_bootstrap_ci
from mgjax.types import Params

METRICS = ("pooled", "single", "nll")


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
  each with its g_R exactly as `mg.iteration` computes it -> (state with advanced envs,
  RealBatches)."""
  policy = su.nets.make_policy(state.obs_stats)
  value_fn = su.nets.make_value_fn(state.obs_stats)
  theta = state.agent_params["policy"]

  def one(env_state, k):
    env_state, batch = mg.collect(
      su.train_env,
      policy,
      theta,
      env_state,
      k,
      rollout_length=su.rollout_length,
      action_mode=su.action_mode,
    )
    adv, _ = mg.real_advantages(
      value_fn, state.agent_params["value"], batch, discount=su.discount, gae_lambda=su.gae_lambda
    )
    return env_state, (mg.batch_rows(batch), mg.real_policy_gradient(policy, theta, batch, adv))

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


def fit(
  su, state, fit_data: RealBatches, objective: Objective, key: jax.Array, max_grad_norm: float
) -> Params:
  """`objective.steps` model steps from the snapshot's model and model optimiser state on
  the snapshot's buffer grown by the fit batches -> the fitted model parameters."""
  o = objective
  buffer = buffer_add(state.buffer, _flatten_rows(fit_data.rows))
  target = mean_tree(fit_data.real_grad, o.target_batches)
  starts = _flatten_rows(fit_data.rows)["obs"][: o.target_batches * su.batch_steps]
  nll = su.nll(state.obs_stats)
  held_in = jax.tree.map(lambda x: x[:4096], _flatten_rows(fit_data.rows))
  nll_start = nll(state.model_params, held_in)

  def step(carry, k):
    params, opt = carry
    bkey, skey, rkey = jax.random.split(k, 3)
    g_nll = jax.grad(nll)(params, buffer_sample(buffer, bkey, su.mle_batch))
    plain = apply_gradients(su.model_optimizer, params, opt, g_nll)
    if not o.mg:
      return plain, None
    g_mg = jax.grad(
      lambda p: model_grad(
        su, state, p, sample_obs(starts, skey, o.rollouts), rkey, target, estimator=o.estimator
      )[0]
    )(params)
    grads, _ = combine_model_grads(
      g_mg, g_nll, mle_weight=jnp.float32(o.mle_weight), max_norm=jnp.float32(max_grad_norm)
    )
    new = apply_gradients(su.model_optimizer, params, opt, grads)
    if o.nll_tolerance > 0:
      inside = nll(new[0], held_in) <= nll_start + o.nll_tolerance
      new = jax.tree.map(lambda a, b: jnp.where(inside, a, b), new, plain)
    return new, None

  (params, _), _ = jax.lax.scan(
    step, (state.model_params, state.model_opt), jax.random.split(key, o.steps)
  )
  return params


def measure(
  su, state, model_params: Params, heldout: RealBatches, key: jax.Array, draws: int
) -> dict[str, jax.Array]:
  """pooled and single-batch alignment and held-out NLL of one model (module docstring)."""
  rows = heldout.rows
  n = rows["obs"].shape[0]
  all_obs = _flatten_rows(rows)["obs"]
  g_true = mean_tree(heldout.real_grad)
  pkey, skey = jax.random.split(key)
  m = su.mg.rollouts

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

  singles = jax.lax.map(single, (rows["obs"], heldout.real_grad, jax.random.split(skey, n)))
  every = _flatten_rows(rows)
  nll = model_nll(
    su.model_net,
    state.obs_stats,
    model_params,
    every["obs"],
    every["action"],
    every["next_obs"],
    every["reward"],
    su.action_mode,
  )
  return {"pooled": cos(g_pooled, flat(g_true)), "single": jnp.mean(singles), "nll": nll}


def pooled_ceiling(split_half: float) -> float:
  """The highest pooled alignment a noiseless ĝ_M = E[g_R] can score against the mean of all
  held-out g_R, from the split-half cosine r of two half means: for g_R^i = g + noise, the
  full mean's reliability is 2r/(1 + r) (Spearman–Brown) and cos(g, ḡ_R) its square root."""
  r = max(split_half, 0.0)
  return math.sqrt(2 * r / (1 + r))


def noise_floor(fit_data: RealBatches, heldout: RealBatches) -> dict[str, float]:
  """How much alignment the held-out data can show at all: g_R's mean pairwise cosine
  over held-out batches (ρ, the single-batch ceiling), the split-half cosine of the pooled
  ḡ_R (its own reliability), and the cosine of the fit batches' mean g_R with ḡ_R."""
  g = np.asarray(jax.vmap(flat)(heldout.real_grad), np.float64)
  n = g.shape[0]
  unit = g / np.linalg.norm(g, axis=1, keepdims=True)
  pair = (unit @ unit.T)[np.triu_indices(n, 1)]
  half = n // 2
  cos64 = lambda a, b: float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
  g_fit = np.asarray(jax.vmap(flat)(fit_data.real_grad), np.float64)
  split_half = cos64(g[:half].mean(0), g[half:].mean(0))
  return {
    "real_pairwise": float(pair.mean()),
    "pooled_split_half": split_half,
    "pooled_ceiling": pooled_ceiling(split_half),
    "fit_target_vs_pooled": cos64(g_fit.mean(0), g.mean(0)),
    "fit_batch0_vs_pooled": cos64(g_fit[0], g.mean(0)),
  }


def mean_ci(x: Sequence[float], seed: int = 0) -> dict[str, float]:
  """Mean over fit keys with a 95% bootstrap CI."""
  mean, lo, hi = stratified_bootstrap_ci([np.asarray(x)], statistic=np.mean, seed=seed)
  return {"mean": mean, "lo": lo, "hi": hi}


@dataclasses.dataclass(frozen=True)
class ProbeSettings:
  """The probe's sizes: fit and held-out batches, ĝ_M draws for the pooled alignment and
  the fit keys a CI is taken over."""

  fit_batches: int = 16
  heldout_batches: int = 32
  draws: int = 32
  fit_keys: int = 6


def run_probe(
  su,
  state,
  objectives: Sequence[Objective],
  key: jax.Array,
  settings: ProbeSettings,
  max_grad_norm: float,
  log=print,
) -> dict[str, Any]:
  """Every objective fitted with `settings.fit_keys` keys and measured on held-out data
  -> {"floor", "start", "objectives": {name: {label, per_key, mean/CI per metric,
  paired difference to the NLL-only arm of the same steps}}}."""
  s = settings
  need = max(o.target_batches for o in objectives)
  if need > s.fit_batches:
    raise ValueError(f"target_batches={need}: more than fit_batches={s.fit_batches}")
  ckey, mkey, fkey = jax.random.split(key, 3)
  state, fit_data = jax.jit(lambda st, k: collect_batches(su, st, k, s.fit_batches))(state, ckey)
  state, heldout = jax.jit(lambda st, k: collect_batches(su, st, k, s.heldout_batches))(
    state, jax.random.fold_in(ckey, 1)
  )
  measure_j = jax.jit(jax.vmap(lambda p: measure(su, state, p, heldout, mkey, s.draws)))
  start = jax.tree.map(lambda x: x[None], state.model_params)
  out = {
    "floor": noise_floor(fit_data, heldout),
    "start": {k: float(v[0]) for k, v in measure_j(start).items()},
    "objectives": {},
  }
  log(f"floor {out['floor']}\nstart {out['start']}")
  fit_one = lambda o, k: fit(su, state, fit_data, o, k, max_grad_norm)
  keys = jax.random.split(fkey, s.fit_keys)
  out["objectives"] = compare(objectives, fit_one, measure_j, keys, objective_label, log)
  return out


def compare(objectives, fit_one, measure_all, keys: jax.Array, label, log=print) -> dict:
  """Each objective o fitted once per key (`fit_one(o, key)` -> model parameters, vmapped
  over `keys`) and measured (`measure_all`: a vmapped batch of models -> {metric: [keys]})
  -> {name: {label, settings, per_key, mean/CI per metric}}, and for each MG objective
  ("vs", "diff"): the paired difference per key to the NLL-only arm of the same steps."""
  rows = {}
  for o in objectives:
    fitted = jax.jit(jax.vmap(lambda k, o=o: fit_one(o, k)))(keys)
    per_key = {k: np.asarray(v, np.float64).tolist() for k, v in measure_all(fitted).items()}
    rows[o.name] = {
      "label": label(o),
      "settings": o._asdict(),
      "per_key": per_key,
      **{m: mean_ci(per_key[m]) for m in METRICS},
    }
    log(f"{o.name}: " + ", ".join(f"{m} {np.mean(per_key[m]):.4f}" for m in METRICS))
  for o in objectives:
    base = next((b for b in objectives if not b.mg and b.steps == o.steps), None)
    if o.mg and base is not None:
      row, ref = rows[o.name], rows[base.name]["per_key"]
      row["vs"] = base.name
      row["diff"] = {m: mean_ci(np.subtract(row["per_key"][m], ref[m])) for m in METRICS}
  return rows


# ------------------------------------------------------------------------------ snapshots
def save_snapshot(path, config, state, extra: dict | None = None) -> None:
  """Writes one run's state as a resume point (`outputs.save_resume_point`: path/resume/)
  that `load_snapshot` reads, like a resume point of `experiments/train.py`."""
  from pathlib import Path

  from mgjax.run import outputs, resume

  leaves = [np.asarray(x)[None] for x in outputs.plain_leaves(state)]
  outputs.save_resume_point(
    Path(path),
    leaves,
    {
      "identity": resume.identity([config], [0], None),
      "iteration": int(state.iteration),
      "env_steps": int(state.env_steps),
      **(extra or {}),
    },
  )


def load_snapshot_meta(path) -> dict[str, Any] | None:
  """The meta.json of path's resume point (None if there is none)."""
  from pathlib import Path

  from mgjax.run import outputs

  return outputs.load_resume_meta(Path(path))


def load_snapshot(path, run_index: int = 0):
  """Run `run_index` of the resume point in `path` (written by `save_snapshot` or by a
  paused `train.py` run) -> (config, trainer, state); ValueError naming the folder if
  there is none."""
  from pathlib import Path

  from mgjax.algorithms import config_from_dict, make_trainer
  from mgjax.run import outputs

  meta = outputs.load_resume_meta(Path(path))
  if meta is None:
    raise ValueError(f"snapshot={str(path)!r}: no resume point in this folder")
  with np.load(Path(meta["_dir"]) / "state.npz") as f:  # one run's rows, a leaf at a time
    runs = f["arr_0"].shape[0]
    if not 0 <= run_index < runs:
      raise ValueError(f"run_index={run_index}: the point in {str(path)!r} holds {runs} runs")
    saved = [f[f"arr_{i}"][run_index] for i in range(meta["leaves"])]
  configs = meta["identity"]["configs"]  # one per sweep setting, seeds innermost
  config = config_from_dict(configs[run_index * len(configs) // runs])
  trainer = make_trainer(config)
  like_leaves, treedef = jax.tree.flatten(jax.eval_shape(trainer.init, jax.random.key(0)))
  impl = jax.random.key_impl(jax.random.key(0))  # the state's keys all come from jax.random.key
  leaves = []
  for x, ref in zip(saved, like_leaves):
    x = jnp.asarray(x)
    leaves.append(jax.random.wrap_key_data(x, impl=impl) if outputs.is_key(ref) else x)
  return config, trainer, jax.tree.unflatten(treedef, leaves)


def make_snapshots(config, root, at: Sequence[int], seed: int, log=print) -> list[tuple[int, Any]]:
  """(chunks, folder) for each n in `at`: root/chunks=n, a snapshot of one run of `config`
  (seed `seed`) after n evaluation chunks. Missing ones are trained: from the latest
  snapshot below them of the same config and seed where there is one (a resumed run gives
  the straight run's numbers bit for bit), else from the start."""
  from pathlib import Path

  root = Path(root).expanduser()
  wanted = [(n, root / f"chunks={n}") for n in at]
  missing = [n for n, d in wanted if load_snapshot_meta(d) is None]
  if not missing:
    return wanted
  from mgjax.algorithms import config_from_dict

  trainer, state, done = None, None, 0
  counts = (d.name.removeprefix("chunks=") for d in root.glob("chunks=*"))
  for n in sorted((int(c) for c in counts if c.isdigit()), reverse=True):
    meta = load_snapshot_meta(root / f"chunks={n}")
    if n >= max(missing) or meta is None or meta.get("seed") != seed:
      continue
    if config_from_dict(meta["identity"]["configs"][0]) == config:  # before loading its state
      _, trainer, state = load_snapshot(root / f"chunks={n}")
      done = n
      log(f"continuing from the snapshot after {n} chunks ({int(state.env_steps)} env steps)")
      break
  if not done:
    from mgjax.algorithms import make_trainer

    trainer = make_trainer(config)
    state = jax.jit(trainer.init)(jax.random.key(seed))
  chunk = jax.jit(trainer.chunk)
  for n in range(done + 1, max(missing) + 1):
    state, metrics = chunk(state)
    if n in missing:
      eval_return = float(metrics["eval"]["eval_return"])
      save_snapshot(
        root / f"chunks={n}", config, state, {"chunks": n, "eval_return": eval_return, "seed": seed}
      )
      log(
        f"snapshot after {n} chunks ({int(state.env_steps)} env steps, eval return "
        f"{eval_return:.1f})"
      )
  return wanted


def separated(row: dict[str, Any], metric: str = "pooled") -> bool:
  """Whether an objective's paired difference to NLL only has a CI above zero."""
  return "diff" in row and row["diff"][metric]["lo"] > 0


def check_finite(result: dict[str, Any]) -> list[str]:
  """Names of objectives with a non-finite metric (a blown-up fit)."""
  return [
    name
    for name, row in result["objectives"].items()
    if not all(math.isfinite(v) for m in METRICS for v in row["per_key"][m])
  ]


def _verdict(row: dict[str, Any], metric: str) -> int:
  """+1 where an MG objective's paired difference to NLL only is better with its CI clear of
  zero (higher alignment, lower NLL), −1 where worse, 0 otherwise or without a pair."""
  if "diff" not in row:
    return 0
  d, sign = row["diff"][metric], (-1 if metric == "nll" else 1)
  return sign if d["lo"] > 0 else -sign if d["hi"] < 0 else 0


def plot_probe(points: Sequence[dict[str, Any]], path) -> None:
  """One column per snapshot: the pooled alignment (top), the single-batch alignment
  (middle) and the held-out NLL (bottom) of every objective, mean and 95% CI over fit
  keys; dashed, the snapshot's own model; dotted, the pooled ceiling. Green: better than
  NLL only with the paired CI clear of zero; red: worse; grey: NLL only."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  width = max(len(p["objectives"]) for p in points)
  fig, axes = plt.subplots(
    len(METRICS), len(points), squeeze=False, figsize=(0.4 * width * len(points) + 2, 8)
  )
  labels = {
    "pooled": "pooled cos(ĝ_M, ḡ_R)",
    "single": "single-batch cos(ĝ_M, g_R)",
    "nll": "held-out NLL",
  }
  for col, p in enumerate(points):
    names = list(p["objectives"])
    for row, metric in enumerate(METRICS):
      ax = axes[row][col]
      for x, name in enumerate(names):
        r = p["objectives"][name]
        s = r[metric]
        color = (
          "tab:grey"
          if not r["settings"]["mg"]
          else {1: "tab:green", -1: "tab:red", 0: "tab:blue"}[_verdict(r, metric)]
        )
        ax.errorbar(
          [x],
          [s["mean"]],
          yerr=[[s["mean"] - s["lo"]], [s["hi"] - s["mean"]]],
          fmt="o",
          color=color,
          capsize=3,
        )
      ax.axhline(p["start"][metric], color="k", ls="--", lw=0.8)
      if metric == "pooled":  # what a noiseless ĝ_M could score against these batches
        ax.axhline(pooled_ceiling(p["floor"]["pooled_split_half"]), color="k", ls=":", lw=0.8)
      if metric == "nll":  # MG-only fits reach hundreds of nats
        ax.set_yscale("symlog", linthresh=1.0)
      ax.set_xticks(range(len(names)))
      ax.set_xticklabels(names if row == len(METRICS) - 1 else [], rotation=70, fontsize=7)
      ax.grid(axis="y", lw=0.3)
      if col == 0:
        ax.set_ylabel(labels[metric], fontsize=8)
      if row == 0:
        ax.set_title(f"{p['env']} {p['algo']} at {p['env_steps'] // 1000}k", fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def probe_table(points: Sequence[dict[str, Any]]) -> str:
  """A Markdown table: per snapshot and objective, the pooled and single-batch alignment and
  the held-out NLL (mean [95% CI] over fit keys), and the paired difference of the pooled
  alignment to NLL only, marked ↑/↓ where its CI is clear of zero."""
  fmt = lambda s: f"{s['mean']:.3f} [{s['lo']:.3f}, {s['hi']:.3f}]"
  lines = [
    "| snapshot | objective | pooled | single | held-out NLL | pooled − NLL only | "
    "single − NLL only |",
    "|---|---|---|---|---|---|---|",
  ]
  for p in points:
    where = f"{p['env']} {p['env_steps'] // 1000}k"
    start, floor = p["start"], p["floor"]
    lines.append(
      f"| {where} | ceiling (noiseless ĝ_M) | "
      f"{pooled_ceiling(floor['pooled_split_half']):.3f} | "
      f"√ρ = {math.sqrt(max(floor['real_pairwise'], 0)):.3f} | | | |"
    )
    lines.append(
      f"| {where} | the snapshot's model | {start['pooled']:.3f} | "
      f"{start['single']:.3f} | {start['nll']:.3f} | | |"
    )
    for name, row in p["objectives"].items():
      diffs = []
      for m in ("pooled", "single"):
        if "diff" not in row:
          diffs.append("")
          continue
        d = row["diff"][m]
        mark = " ↑" if d["lo"] > 0 else " ↓" if d["hi"] < 0 else ""
        diffs.append(f"{d['mean']:+.3f} [{d['lo']:+.3f}, {d['hi']:+.3f}]{mark}")
      lines.append(
        f"| {where} | `{name}` | {fmt(row['pooled'])} | {fmt(row['single'])} | "
        f"{fmt(row['nll'])} | {diffs[0]} | {diffs[1]} |"
      )
  return "\n".join(lines)
