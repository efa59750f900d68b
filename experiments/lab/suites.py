"""The benchmark suites of experiments/benchmark.py: algorithms × environments × seeds, and
the Config fields each suite sets on top of the algorithms' presets."""

import dataclasses

from mgjax.algorithms import make_config
from mgjax.config import Config
from mgjax.run.placement import cpu_split


@dataclasses.dataclass(frozen=True)
class Suite:
  """A benchmark suite: every algorithm on every env, `seeds` seeds of `total_steps` each."""

  envs: tuple[str, ...]
  algos: tuple[str, ...]  # registered algorithm names
  seeds: int
  total_steps: int
  overrides: tuple[tuple[str, object], ...] = ()  # Config fields shared by every cell
  algo_overrides: tuple[tuple[str, tuple[tuple[str, object], ...]], ...] = ()  # per algo

  def config(self, algo: str, env: str, extra: dict) -> Config:
    """The algorithm's preset, then the suite's overrides, then --set fields."""
    own = dict(dict(self.algo_overrides).get(algo, ()))
    return make_config(
      **{
        **dict(self.overrides),
        **own,
        "algo": algo,
        "env": env,
        "total_steps": self.total_steps,
        **extra,
      }
    )

  def cells(self, envs=None, algos=None, extra=None) -> list[tuple[str, str, Config]]:
    """(algo, env, config) of each cell of `envs` × `algos` (default the suite's), env by
    env, with `extra` Config fields; the SAC family's cells, which the CPU keeps on one
    device (`mgjax.run.placement.cpu_split`), last: SAC's loop costs hundreds of times more
    per env step (RESULTS.md), so the others finish first. ConfigError names a bad field."""
    cells = [
      (a, e, self.config(a, e, extra or {})) for e in envs or self.envs for a in algos or self.algos
    ]
    return sorted(cells, key=lambda cell: not cpu_split(cell[0]))


# Evaluations every 5 iterations of 1024 steps (5120 env steps) so that the 25k/50k/100k
# milestones of the results table fall within half a chunk of an evaluation.
_EVAL = (("eval_every", 5),)
# mbpo keeps its own iteration of 250 env steps (MBPO's model round); evaluations every 5
# of them, after the 5000 exploration steps, also land on the milestones.
_SMOKE_SAC_LOOP = (
  ("num_envs", 1),
  ("rollout_length", 128),
  ("eval_every", 4),
  ("exploration_steps", 1024),
  ("sac_hidden", (32, 32)),
  ("sac_batch", 64),
  ("updates_per_step", 1),
)
_SMOKE_SAC = _SMOKE_SAC_LOOP + (
  ("ensemble_size", 3),
  ("elites", 2),
  ("rollout_batch", 64),
  ("model_max_epochs", 2),
  ("model_epoch_steps", 5),
  ("branch_schedule", (0, 2, 1, 3)),
)
# The SAC family's CPU configuration (RESULTS.md, "The SAC family on a CPU"): MBPO's
# published settings but for the three stages that cost most on a CPU, each cut where the
# roofline measured it: 5 instead of 20 SAC updates per env step, a model round of exactly
# 100 warm-started ensemble steps (2 epochs of 50) instead of early stopping over the whole
# buffer, and rollouts stepped by their drawn elite only.
_CPU_SAC = (
  ("updates_per_step", 5),
  ("model_fit_budget", 100),
  ("model_epoch_steps", 50),
  ("elite_draw", "block"),
)
# mg-sac (MBPO with MG model steps) is not in the cpu and gpu suites: a cell costs what an
# mbpo cell does. Run it with --algo mg-sac.
SUITES = {
  "cpu": Suite(
    ("hopper", "walker2d", "halfcheetah", "ant"),
    ("mg", "mle", "ppo", "mbpo", "sac"),
    5,
    100_000,
    _EVAL,
  ),
  # Convergence (the paper's second claim): the PPO loop to 1M env steps, evaluated every
  # 50 iterations (51,200 env steps; 102,400, 256,000, 512,000 and 1,024,000 are the table's
  # 100k, 250k, 500k and 1M). A cell takes hours (RESULTS.md, "Long runs"): run it with
  # --time-limit and again to go on.
  "cpu-long": Suite(
    ("hopper", "ant", "halfcheetah"),
    ("mg", "mle", "ppo"),
    5,
    1_000_000,
    (("eval_every", 50),),
  ),
  "gpu": Suite(
    ("hopper", "walker2d", "halfcheetah", "ant", "humanoid"),
    ("mg", "mle", "ppo", "mbpo", "sac"),
    10,
    300_000,
    _EVAL,
  ),
  "smoke": Suite(
    ("pointmass",),
    ("mg", "mle", "ppo", "mbpo", "mg-sac", "sac"),
    2,
    5120,
    (
      ("num_envs", 16),
      ("rollout_length", 32),
      ("eval_every", 5),
      ("num_eval_envs", 4),
      ("model_hidden", (32, 32)),
      ("mle_steps", 5),
      ("mg_steps", 1),
      ("mg_rollouts", 32),
      ("model_rollouts", 64),
      ("model_updates", 1),
    ),
    algo_overrides=(
      ("mbpo", _SMOKE_SAC),
      ("mg-sac", _SMOKE_SAC + (("mg_horizon", 3),)),
      ("sac", _SMOKE_SAC_LOOP),
    ),
  ),
  "cpu-sac": Suite(
    ("hopper", "walker2d", "halfcheetah", "ant"),
    ("mbpo", "mg-sac"),
    5,
    40_000,
    _EVAL,
    algo_overrides=(("mbpo", _CPU_SAC), ("mg-sac", _CPU_SAC)),
  ),
}
