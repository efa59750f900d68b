"""cos(ĝ_M, g_R) of a finished mbpo or mg-sac run, next to its noise ceiling.

  python experiments/sac_alignment.py runs/pointmass-sac/mg-sac --draws 32 \
      --out results/pointmass-sac/alignment_ceiling-mg-sac.json

Loads DIR/config.json, summary.json and checkpoint/ (the final state of every seed) and,
per seed, averages over --draws key draws (`mgjax.algorithms.mbpo.alignment_ceiling`):

  model_vs_real   cos(ĝ_M, g_R): the SAC actor-loss gradient on the states of the model's
                  mg_horizon-step rollouts against the one on real buffer states, as the
                  run logs it in `model_grad_cosine`
  real_vs_real    cos(g_R', g_R), g_R' from as many other real buffer states: what a model
                  whose states were fresh real data would score (the noise ceiling)

Prints one JSON object and writes it to --out if given.
"""

import json
import sys
from pathlib import Path

import jax
import numpy as np

from mgjax import make_trainer
from mgjax.algorithms import config_from_dict, mbpo
from mgjax.run import restore_checkpoint
from mgjax.run.cli import Parser


def measure(run: Path, draws: int) -> dict:
  # config.json of any version: earlier field names and the "resolved" sizes are read too.
  config = config_from_dict(json.loads((run / "config.json").read_text()))
  seeds = json.loads((run / "summary.json").read_text())["seeds"]
  trainer = make_trainer(config)
  keys = jax.vmap(jax.random.key)(np.asarray(seeds, np.uint32))
  states = restore_checkpoint(run / "checkpoint", jax.eval_shape(jax.vmap(trainer.init), keys))

  @jax.jit
  def per_seed(states, key):
    def one(state, key):
      draw = lambda k: mbpo.alignment_ceiling(trainer.setup, state, k)
      return jax.tree.map(lambda x: x.mean(), jax.vmap(draw)(jax.random.split(key, draws)))

    return jax.vmap(one)(states, jax.random.split(key, len(seeds)))

  values = jax.tree.map(np.asarray, per_seed(states, jax.random.key(0)))
  return {
    "run": str(run),
    "algo": config.algo,
    "env": config.env,
    "draws": draws,
    "states_per_gradient": config.mg_rollouts * config.mg_horizon,
    "seeds": {
      str(s): {k: round(float(v[i]), 4) for k, v in values.items()} for i, s in enumerate(seeds)
    },
    "mean": {k: round(float(v.mean()), 4) for k, v in values.items()},
  }


def main(argv=None) -> int:
  p = Parser(description=__doc__)
  p.add_argument("run", help="a finished mbpo or mg-sac run folder (train.py --out)")
  p.add_argument("--draws", type=int, default=32, help="key draws averaged per seed")
  p.add_argument("--out", default=None, help="also write the JSON here")
  args = p.parse_args(argv)
  run = Path(args.run)
  if args.draws < 1:
    p.error(f"--draws={args.draws}: must be positive")
  missing = [n for n in ("config.json", "summary.json", "checkpoint") if not (run / n).exists()]
  if missing:
    p.error(f"run={args.run!r}: no {', '.join(missing)} there (a finished train.py run folder)")
  algo = json.loads((run / "config.json").read_text()).get("algo")
  if algo not in ("mbpo", "mg-sac"):
    p.error(f"run={args.run!r}: algo={algo!r}; this measures mbpo and mg-sac runs")
  result = measure(run, args.draws)
  print(json.dumps(result))
  if args.out:
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
  return 0


if __name__ == "__main__":
  sys.exit(main())
