"""Anchor: mgjax's `ppo` against brax's own PPO trainer, same env, budget and settings.

  python experiments/compare_brax_ppo.py                    # hopper, 100k steps, 3 seeds
  python experiments/compare_brax_ppo.py --env pointmass --total-steps 20480 --seeds 1

Both run in this process, one after the other, and are timed the same way (wall time of the
training call minus its compile, env steps per second). brax 0.14.2's trainer calls
`jax.device_put_replicated`, which jax 0.10 removed; it is patched here, and only here, with
an equivalent that stacks the value once per local device.

Settings match: envs, unroll/rollout length, minibatches, epochs, learning rate, clipping,
discount, GAE λ, gradient clipping, observation normalisation, network sizes, evaluation
envs. Known differences: brax masks time-limit truncations (its bootstrap_on_timeout needs a
wrapper field its own env wrappers do not set here) where mgjax bootstraps them from the
pre-reset observation; brax's networks use swish activations and a tanh-squashed policy.
"""

import functools
import json
import sys
import time
import warnings
from pathlib import Path

warnings.filterwarnings("ignore", message="Brax System, piplines and environments")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from mgjax import envs  # noqa: E402
from mgjax.algorithms import run_schedule  # noqa: E402
from mgjax.config import Config  # noqa: E402
from mgjax.run import outputs, run  # noqa: E402
from mgjax.run.cli import Parser  # noqa: E402


def _device_put_replicated(x, devices):
  """What jax.device_put_replicated did: a leading axis of len(devices) copies, one per
  device (sharded over them for pmap)."""
  sharding = (
    jax.sharding.PositionalSharding(devices)
    if hasattr(jax.sharding, "PositionalSharding")
    else None
  )
  stacked = jax.tree.map(lambda a: jnp.stack([jnp.asarray(a)] * len(devices)), x)
  return stacked if sharding is None else jax.device_put(stacked, sharding)


def _brax_train_args(config: Config, info, num_timesteps: int, num_evals: int) -> dict:
  """brax's `ppo.train` arguments with `config`'s settings (all but the seed and the
  progress function)."""
  from brax.training.agents.ppo import networks as ppo_networks

  return dict(
    environment=info.env,
    num_timesteps=num_timesteps,
    episode_length=info.episode_length,
    num_envs=config.num_envs,
    unroll_length=config.rollout_length,
    # batch_size · num_minibatches unrolls of rollout_length steps per update = our batch.
    batch_size=config.num_envs // config.num_minibatches,
    num_minibatches=config.num_minibatches,
    num_updates_per_batch=config.ppo_epochs,
    learning_rate=config.learning_rate,
    entropy_cost=config.entropy_coef,
    discounting=config.discount,
    gae_lambda=config.gae_lambda,
    clipping_epsilon=config.clip_eps,
    max_grad_norm=config.max_grad_norm,
    normalize_observations=True,
    vf_loss_coefficient=config.value_coef,
    bootstrap_on_timeout=False,
    num_evals=num_evals,
    num_eval_envs=config.num_eval_envs,
    deterministic_eval=True,
    network_factory=functools.partial(
      ppo_networks.make_ppo_networks,
      policy_hidden_layer_sizes=config.policy_hidden,
      value_hidden_layer_sizes=config.value_hidden,
    ),
  )


def run_brax_ppo(config: Config, seed: int) -> dict:
  from brax.training.agents.ppo import train as ppo

  if not hasattr(jax, "device_put_replicated"):
    jax.device_put_replicated = _device_put_replicated
  info = envs.make_env(
    config.env,
    backend=config.backend,
    episode_length=config.episode_length or None,
    distractor_dims=config.distractor_dims,
  )
  steps_per_update = config.num_envs * config.rollout_length
  schedule = run_schedule(config)  # the same iterations and evaluations as mgjax's run
  evals, t_first = [], []

  def progress(num_steps, metrics):
    t_first.append(time.time())
    if "eval/episode_reward" in metrics:
      evals.append((int(num_steps), float(metrics["eval/episode_reward"])))

  start = time.time()
  ppo.train(
    **_brax_train_args(
      config, info, schedule.num_iterations * steps_per_update, schedule.num_chunks + 1
    ),
    seed=seed,
    progress_fn=progress,
  )
  total = time.time() - start
  # The first progress call follows the first evaluation (compile of eval + init);
  # the training compile is inside the first epoch, so report both totals plainly.
  steps = schedule.num_iterations * steps_per_update
  return {
    "seed": seed,
    "evals": evals,
    "final_eval_return": evals[-1][1] if evals else None,
    "wall_time_s": total,
    "env_steps": steps,
    "env_steps_per_s_incl_compile": steps / total,
  }


def main(argv=None) -> int:
  p = Parser(description=__doc__)
  p.add_argument("--env", default="hopper")
  p.add_argument("--total-steps", type=int, default=100_000)
  p.add_argument("--seeds", type=int, default=3)
  p.add_argument("--out", default="results/anchor_brax_ppo.json")
  args = p.parse_args(argv)
  config = Config(algo="ppo", env=args.env, total_steps=args.total_steps)
  report = {
    "config": config.to_dict(),
    "versions": outputs.package_versions(),
    "mgjax": [],
    "brax": [],
  }
  for seed in range(args.seeds):
    run_dir = outputs.prepare_out_dir(Path("runs/anchor") / f"mgjax-ppo-{seed}", True)
    start = time.time()
    s = run(config, seeds=[seed], out=run_dir, progress=False, log=lambda *a: None)
    report["mgjax"].append(
      {
        "seed": seed,
        "final_eval_return": s["final_eval_return_mean"],
        "wall_time_s": time.time() - start,
        "env_steps": s["total_env_steps"],
        "env_steps_per_s_incl_compile": s["total_env_steps"] / (time.time() - start),
      }
    )
    report["brax"].append(run_brax_ppo(config, seed))
    print(json.dumps({"mgjax": report["mgjax"][-1], "brax": report["brax"][-1]}), flush=True)
  for name in ("mgjax", "brax"):
    finals = [r["final_eval_return"] for r in report[name]]
    rate = [r["env_steps_per_s_incl_compile"] for r in report[name]]
    report[f"{name}_mean_final_return"] = float(np.mean(finals))
    report[f"{name}_mean_env_steps_per_s_incl_compile"] = float(np.mean(rate))
    print(
      f"{name:6s} final eval return {np.mean(finals):8.1f} ± {np.std(finals):.1f} "
      f"({len(finals)} seeds); {np.mean(rate):.0f} env steps/s incl. compile"
    )
  out = Path(args.out)
  out.parent.mkdir(parents=True, exist_ok=True)
  outputs.write_json(out, report)
  print(f"wrote {out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
