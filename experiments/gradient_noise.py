"""How much alignment can the estimates show? The noise ceiling of cos(ĝ_M, g_R).

  python experiments/gradient_noise.py --env hopper --at 0,2,5,9 --batches 32 \
      --out results/gradient_noise/hopper.json

Trains one seed of --algo (default mle) and, after each number of evaluation chunks in --at,
freezes its policy, value function and model and collects --batches consecutive real
batches of the training loop's size (num_envs x rollout_length), computing g_R on each
exactly as an iteration does (training then goes on from the unfrozen state). With one
policy for all batches the g_R^i are independent estimates of one true gradient g, so (for
g_R^i = g + noise) their mean pairwise cosine is rho = |g|^2 / (|g|^2 + |noise|^2): the
alignment a perfect model would score if its ĝ_M were as noisy as g_R, and cos(g_R, g) is
about sqrt(rho). Per point, printed as one JSON line and written to --out as a list:

  real_pairwise             mean cos(g_R^i, g_R^j), i != j (rho, the noise ceiling)
  real_vs_rest              mean cos(g_R^i, mean of the other batches' g_R)
  model_buffer              mean cos(ĝ_M, g_R^i), MG rollouts from the whole buffer
  model_batch               the same with start states from batch i (mg_start="batch")
  model_batch_pooled        mean cos(ĝ_M, g_R^i), ĝ_M averaged over --batches draws from
                            batch i's states (ĝ_M's own noise averaged away)
  model_vs_real_all_pooled  cos(mean of all pooled ĝ_M, mean of all g_R): the model's
                            gradient against the real one with both sides' noise reduced
  real_pairwise_by_array    per policy parameter array: its size, its own real_pairwise
                            and its mean share of |g_R|^2

Each batch i is appended to the buffer before its ĝ_M is drawn, as in an iteration.
Other Config fields can be set with --set FIELD=VALUE. `--plot DIR` draws every JSON file
in DIR as one panel of DIR/gradient_noise.png.

The target's noise under each advantage convention (`lab.target_noise`):

  python experiments/gradient_noise.py --snapshots '~/mgjax-runs/probe/hopper-seed*/chunks=*' \
      --batches 64 --critic-steps 500 --out results/gradient_noise/conventions.json

measures, at each snapshot folder (a glob; comma-separated for several), ρ and the split-half
cosine of --batches fresh single-batch g_R with raw, centred and normalised advantages, and
(--critic-steps > 0) the same with ψ first fitted on --critic-batches other real batches'
λ-returns; prints a Markdown table and writes the JSON list to --out.
"""

import dataclasses
import glob
import json
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from lab import probe, target_noise

from mgjax import extras, make_trainer
from mgjax.algorithms import make_config, mg
from mgjax.buffer import buffer_add
from mgjax.config import MG_STARTS, ConfigError
from mgjax.run import compile_cache
from mgjax.run.cli import Parser, parse_set


def _flat(tree) -> jax.Array:
  return jnp.concatenate([jnp.ravel(x) for x in jax.tree.leaves(tree)])


def _cos(a: np.ndarray, b: np.ndarray) -> float:
  return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))


def _batch_measurer(su, batches: int):
  """The jitted measurement of one real batch: `(state, key) -> (state, out)`."""
  setups = {
    s: dataclasses.replace(su, mg=dataclasses.replace(su.mg, mg_start=s)) for s in MG_STARTS
  }

  @jax.jit
  def one_batch(state, key):
    """Collect one real batch with the frozen policy; g_R; ĝ_M draws on the grown buffer."""
    ckey, bkey, pkey = jax.random.split(key, 3)
    policy = su.nets.make_policy(state.obs_stats)
    env_state, batch = mg.collect_batch(su, state, ckey)  # the iteration's collect stage
    state = state.replace(env_state=env_state)
    adv, _ = mg.real_advantages(
      su.nets.make_value_fn(state.obs_stats),
      state.agent_params["value"],
      batch,
      discount=su.ppo.discount,
      gae_lambda=su.ppo.gae_lambda,
    )
    g_r = mg.real_policy_gradient(policy, state.agent_params["policy"], batch, adv)
    grown = state.replace(buffer=buffer_add(state.buffer, mg.batch_rows(batch)))
    out = {"g_r": _flat(g_r), "g_r_leaves": g_r}
    for name, s in setups.items():
      out[f"cos_{name}"] = mg.model_alignment(s, grown, bkey, g_r)
    # ĝ_M averaged over `batches` independent draws from batch i's states.
    g_model = lambda k: mg.mg_loss(setups["batch"], grown, grown.model_params, k, g_r)[1][
      "model_grad"
    ]
    out["g_m_pooled"] = jax.vmap(lambda k: _flat(g_model(k)))(jax.random.split(pkey, batches)).mean(
      0
    )
    return state, out

  return one_batch


def measure(config, at: list[int], batches: int, seed: int = 0) -> list[dict]:
  """Trains one seed and measures after each number of chunks in `at` (ascending)."""
  trainer = make_trainer(config)
  one_batch = _batch_measurer(trainer.setup, batches)
  t0 = time.time()
  state = jax.jit(trainer.init)(jax.random.key(seed))
  chunk = jax.jit(trainer.chunk)
  eval_return, done, points = None, 0, []  # no evaluation before the first chunk
  for target in at:
    for _ in range(target - done):
      state, metrics = chunk(state)
      eval_return = float(metrics["eval"]["eval_return"])
    done = target
    t1 = time.time()
    rows, probe = [], state  # measuring advances a copy's envs; training goes on from `state`
    for k in jax.random.split(jax.random.fold_in(jax.random.key(seed + 1000), target), batches):
      probe, out = one_batch(probe, k)
      rows.append(jax.tree.map(np.asarray, out))
    points.append(
      {
        "env": config.env,
        "algo": config.algo,
        "chunks": target,
        "batches": batches,
        "env_steps": target * config.eval_every * config.batch_steps,
        "batch_steps": config.batch_steps,
        "mg_rollouts": config.mg_rollouts,
        "mg_horizon": config.mg_horizon,
        "eval_return": eval_return,
        **_cosines(rows, batches),
        "measure_s": round(time.time() - t1, 1),
        "elapsed_s": round(time.time() - t0, 1),
      }
    )
    print(json.dumps(points[-1]), flush=True)
  return points


def _cosines(rows: list[dict], batches: int) -> dict:
  """The point's measurements from its batches' rows (`_batch_measurer`'s outputs), from
  "policy_params" to "real_pairwise_by_array"."""
  g = np.stack([r["g_r"] for r in rows])
  g_m = np.stack([r["g_m_pooled"] for r in rows])
  pair = [_cos(g[i], g[j]) for i in range(batches) for j in range(batches) if i < j]
  rest = [_cos(g[i], (g.sum(0) - g[i]) / (batches - 1)) for i in range(batches)]
  return {
    "policy_params": int(g.shape[1]),
    "real_pairwise": float(np.mean(pair)),
    "real_vs_rest": float(np.mean(rest)),
    "model_buffer": float(np.mean([r["cos_buffer"] for r in rows])),
    "model_batch": float(np.mean([r["cos_batch"] for r in rows])),
    "model_batch_pooled": float(np.mean([_cos(g_m[i], g[i]) for i in range(batches)])),
    "model_vs_real_all_pooled": _cos(g_m.mean(0), g.mean(0)),
    "real_pairwise_by_array": _by_array(rows, g, batches),
  }


def _by_array(rows: list[dict], g: np.ndarray, batches: int) -> dict[str, dict]:
  """The ceiling per parameter array: where in θ the consistent part of g_R lives, and
  each array's share of |g_R|^2 (its weight in the overall cosine)."""
  paths = [
    jax.tree_util.keystr(k)
    for k, _ in jax.tree_util.tree_flatten_with_path(rows[0]["g_r_leaves"])[0]
  ]
  per_leaf = [jax.tree.leaves(r["g_r_leaves"]) for r in rows]
  by_leaf = {}
  for j, name in enumerate(paths):
    x = np.stack([np.ravel(leaves[j]) for leaves in per_leaf])
    by_leaf[name] = {
      "size": int(x.shape[1]),
      "pairwise": float(
        np.mean([_cos(x[i], x[k]) for i in range(batches) for k in range(i + 1, batches)])
      ),
      "norm_share": float(np.mean(np.sum(x**2, 1) / np.sum(g**2, 1))),
    }
  return by_leaf


_CURVES = (
  ("real_pairwise", "g_R vs g_R (ceiling)"),
  ("model_buffer", "ĝ_M vs g_R, buffer starts"),
  ("model_batch", "ĝ_M vs g_R, batch starts"),
  ("model_vs_real_all_pooled", "pooled ĝ_M vs pooled g_R"),
)


def plot(folder: Path) -> Path:
  """One panel per env (each *.json in folder) of the cosines against env steps."""
  plt = extras.pyplot()

  files = sorted(folder.glob("*.json"))
  if not files:
    raise FileNotFoundError(f"no *.json files in {folder}")
  fig, axes = plt.subplots(1, len(files), figsize=(4.5 * len(files), 3.5), squeeze=False)
  for ax, f in zip(axes[0], files):
    points = json.loads(f.read_text())
    x = [p["env_steps"] for p in points]
    for key, label in _CURVES:
      ax.plot(x, [p[key] for p in points], marker="o", label=label)
    ax.axhline(0.0, color="grey", lw=0.5)
    ax.set(
      title=f"{points[0]['env']} ({points[0]['algo']}, {points[0]['batches']} batches "
      f"of {points[0]['batch_steps']})",
      xlabel="env steps",
      ylabel="cosine",
      ylim=(-1, 1),
    )
  axes[0][0].legend(fontsize=7)
  fig.tight_layout()
  out = folder / "gradient_noise.png"
  fig.savefig(out, dpi=110)
  plt.close(fig)
  return out


def main(argv=None) -> int:
  p = Parser(description=__doc__)
  p.add_argument("--env", default="hopper")
  p.add_argument("--algo", default="mle", choices=("mg", "mle"))
  p.add_argument(
    "--at", default="0,2,5,9", help="measure after these numbers of evaluation chunks (ascending)"
  )
  p.add_argument("--batches", type=int, default=16, help="real batches with the frozen policy")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE")
  p.add_argument("--out", default=None, help="JSON file to write (default: print only)")
  p.add_argument(
    "--plot",
    default=None,
    metavar="DIR",
    help="measure nothing: draw DIR/*.json into DIR/gradient_noise.png",
  )
  p.add_argument(
    "--snapshots",
    default=None,
    metavar="GLOB[,GLOB]",
    help="measure the advantage conventions at these snapshot folders instead of training",
  )
  p.add_argument("--critic-steps", type=int, default=0, help="fit ψ on real λ-returns (0: no)")
  p.add_argument("--critic-batches", type=int, default=16, help="real batches ψ is fitted on")
  p.add_argument("--critic-lr", type=float, default=3e-4)
  args = p.parse_args(argv)
  if args.snapshots:
    return conventions_main(p, args)
  if args.plot:
    extras.require("matplotlib", "--plot", p)
    try:
      print(plot(Path(args.plot)))
    except FileNotFoundError as e:
      p.error(f"--plot={args.plot!r}: {e}")
    return 0
  try:
    at = [int(x) for x in args.at.split(",")]
  except ValueError:
    at = []
  if not at or at != sorted(at) or at[0] < 0:
    p.error(f"--at={args.at!r}: expected ascending non-negative chunk counts, e.g. 0,2,5")
  if args.batches < 2:
    p.error(f"--batches={args.batches}: need at least 2")
  try:
    config = make_config(algo=args.algo, env=args.env, **parse_set(args.set))
  except ConfigError as e:
    p.error(str(e))
  result = measure(config, at, args.batches, args.seed)
  if args.out:
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
  return 0


def _folders(spec: str) -> list[Path]:
  out = []
  for pattern in spec.split(","):
    pattern = str(Path(pattern).expanduser())
    found = sorted(Path(x) for x in glob.glob(pattern))
    out += [f for f in found if probe.load_snapshot_meta(f) is not None]
  return out


def conventions_main(p, args) -> int:
  """--snapshots: every advantage convention's ρ and split-half cosine at each folder."""
  folders = _folders(args.snapshots)
  if not folders:
    p.error(f"--snapshots={args.snapshots!r}: no snapshot folder matches")
  if args.batches < 4 or args.critic_steps < 0 or args.critic_batches < 1:
    p.error("--batches needs at least 4, --critic-steps 0 or more, --critic-batches 1 or more")
  critic = target_noise.CriticFit(args.critic_steps, args.critic_batches, args.critic_lr)
  compile_cache.enable()
  points, jitted = [], {}
  for folder in folders:
    t0 = time.time()
    config, trainer, state = probe.load_snapshot(folder)
    meta = probe.load_snapshot_meta(folder)
    cache = jitted.setdefault(config, {})
    key = jax.random.key(args.seed + 2000)
    result = target_noise.measure_snapshot(trainer.setup, state, key, args.batches, critic, cache)
    points.append(
      {
        "env": config.env,
        "algo": config.algo,
        "snapshot": str(folder),
        "train_seed": meta.get("seed"),
        "chunks": meta.get("chunks"),
        "env_steps": int(state.env_steps),
        "eval_return": meta.get("eval_return"),
        "batches": args.batches,
        "batch_steps": config.batch_steps,
        **result,
        "elapsed_s": round(time.time() - t0, 1),
      }
    )
    print(json.dumps(points[-1]), flush=True)
    if args.out:
      Path(args.out).parent.mkdir(parents=True, exist_ok=True)
      Path(args.out).write_text(json.dumps(points, indent=2) + "\n")
  print(conventions_table(points))
  return 0


def conventions_table(points: list[dict]) -> str:
  """Markdown: per snapshot and convention, ρ, the split-half cosine (± its sd over
  halvings), mean |g_R|, the raw advantages' mean and sd, and V's explained variance."""
  lines = [
    "| env | seed | env steps | convention | ρ | split-half cos | mean \\|g_R\\| | Â mean | "
    "Â sd | V's explained variance |",
    "|---|---|---|---|---|---|---|---|---|---|",
  ]
  for p in points:
    for name in [c for c in p if c.endswith(target_noise.CONVENTIONS)]:
      r = p[name]
      lines.append(
        f"| {p['env']} | {p['train_seed']} | {p['env_steps'] // 1000}k | {name} | "
        f"{r['rho']:.3f} | {r['split_half']:.3f} ± {r['split_half_sd']:.3f} | "
        f"{r['norm']:.3g} | {r['adv_mean']:.2f} | {r['adv_std']:.2f} | "
        f"{r['value_explained_variance']:.2f} |"
      )
  return "\n".join(lines)


if __name__ == "__main__":
  sys.exit(main())
