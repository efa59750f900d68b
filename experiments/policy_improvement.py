"""Does a better-aligned model give a better policy? (`lab.policy_improvement`)

  python experiments/policy_improvement.py --out results/policy_improvement/hopper.json \
      --snapshots ~/mgjax-runs/probe/hopper-seed0/chunks=6,~/mgjax-runs/probe/hopper-seed1/chunks=6

From each frozen snapshot (a resume point written by `lab.probe.save_snapshot`),
fits the snapshot's model under each arm (--arms), runs the loop's PPO stage from each
fitted model with --ppo-keys keys, and measures ΔJ = J(θ⁺) − J(θ) on common episodes and an
importance-weighted surrogate on held-out real batches, on two held-out sets (A and B);
see experiments/lab/policy_improvement.py. The JSON (a list, one entry per snapshot,
rewritten after each) goes to --out with its summary (means, 95% CIs, paired differences
to NLL only, pooled over the snapshots of one env and env-step count) and verdict; the
figure goes beside it (.png). --table prints the table of --out and redraws its figure;
with --merge a.json,b.json it first gathers the points of those files into --out.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import jax
from lab import policy_improvement as pi
from lab import policy_improvement_report as report
from lab import probe

from mgjax import extras
from mgjax.run import compile_cache

# Deterministic episodes per evaluation set (A and B: twice as many in all).
EPISODES = {"hopper": 32, "halfcheetah": 8}


def write(points: list, out: Path) -> dict:
  summary = report.summarise(points)
  doc = {"summary": summary, "verdict": report.verdict(summary), "points": points}
  out.write_text(json.dumps(doc, indent=1) + "\n")
  report.plot(summary, out.with_suffix(".png"))
  return doc


def parse(argv):
  p = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  p.add_argument("--snapshots", default="", help="comma-separated snapshot folders")
  p.add_argument("--out", required=True, help="JSON file to write")
  p.add_argument("--arms", default=",".join(pi.ARMS), help="comma-separated arms")
  p.add_argument("--fit-keys", type=int, default=2)
  p.add_argument("--ppo-keys", type=int, default=2)
  p.add_argument("--fit-batches", type=int, default=16)
  p.add_argument("--heldout-batches", type=int, default=64, help="per held-out set (A, B)")
  p.add_argument("--episodes", type=int, default=0, help="per set (A, B); 0: hopper 32, else 8")
  p.add_argument("--draws", type=int, default=16, help="ĝ_M draws of the alignment")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--table", action="store_true", help="measure nothing: print --out's table")
  p.add_argument(
    "--merge",
    default="",
    help="with --table: comma-separated JSONs of this command whose points --out gathers",
  )
  args = p.parse_args(argv)
  extras.require("matplotlib", "the figure", p)
  return args


def main(argv=None) -> int:
  args = parse(argv)
  out = Path(args.out)
  if args.table:
    sources = [Path(s).expanduser() for s in args.merge.split(",") if s] or [out]
    points = [p for s in sources for p in json.loads(s.read_text())["points"]]
    doc = write(points, out)
    print(report.table(doc["summary"]))
    print(json.dumps(doc["verdict"], indent=1))
    return 0
  arms = tuple(args.arms.split(","))
  bad = [a for a in arms if a not in pi.ARMS]
  if bad or report.BASE not in arms:
    print(f"error: arms={args.arms!r}: choose from {', '.join(pi.ARMS)}, with nll", file=sys.stderr)
    return 2
  folders = [Path(s).expanduser() for s in args.snapshots.split(",") if s]
  if not folders:
    print("error: snapshots='': name at least one snapshot folder", file=sys.stderr)
    return 2
  compile_cache.enable()
  out.parent.mkdir(parents=True, exist_ok=True)
  points = []
  for folder in folders:
    t0 = time.time()
    config, trainer, state = probe.load_snapshot(folder)
    meta = probe.load_snapshot_meta(folder)
    episodes = args.episodes or EPISODES.get(config.env, 8)
    settings = pi.Settings(
      args.fit_batches,
      args.heldout_batches,
      args.fit_keys,
      args.ppo_keys,
      episodes,
      args.draws,
      arms,
    )
    print(f"== {folder} ({config.env}, {int(state.env_steps)} env steps)", flush=True)
    log = lambda line: print(f"{time.time() - t0:6.0f}s {line}", flush=True)
    result = pi.run(trainer.setup, config, state, jax.random.key(args.seed + 2000), settings, log)
    points.append(
      {
        "env": config.env,
        "algo": config.algo,
        "env_steps": int(state.env_steps),
        "snapshot": str(folder),
        "seed": meta.get("seed"),
        "eval_return": meta.get("eval_return"),
        "settings": settings.__dict__,
        "probe_seed": args.seed,
        **result,
        "elapsed_s": round(time.time() - t0, 1),
      }
    )
    doc = write(points, out)
    log(f"done: J(θ) {result['J']}")
  print(report.table(doc["summary"]))
  print(json.dumps(doc["verdict"], indent=1))
  print(out)
  return 0


if __name__ == "__main__":
  sys.exit(main())
