"""Published learning curves stored in the repo (`results/published/`) as metrics.csv rows, so
that `curves.load_runs(..., extra_rows=...)` and `compare_at` read them beside our runs.

Two layouts:

- `metrics.csv` in mgjax's own columns (`algo`, `env`, `seed`, `env_steps`, `eval_return`),
  read by `curves.load_runs` like any run folder;
- `erl_lib/<algo>/<Env>.csv`, the DHMBPO repository's CSVs copied as they are (columns
  `step,time,reward,seed`, any others ignored), read here by `erl_lib_rows`.

results/published/README.md and results/published/erl_lib/README.md say where each comes from.
"""

import csv
from pathlib import Path

ERL_LIB = "erl_lib"
# erl_lib's folder names -> our algorithm names (its DHMBPO is stored as "esvg").
ERL_LIB_ALGOS = {
  "sac": "sac:erl_lib",
  "sac_long": "sac:erl_lib_long",
  "mbpo": "mbpo:erl_lib",
  "esvg": "dhmbpo:erl_lib",
}
# erl_lib's Gymnasium task names -> mgjax env names.
ERL_LIB_ENVS = {
  "Hopper": "hopper",
  "Walker2d": "walker2d",
  "HalfCheetah": "halfcheetah",
  "Ant": "ant",
}


def erl_lib_files(folder: Path) -> list[Path]:
  """The known (algo, env) CSVs under folder (an `erl_lib/` folder), sorted."""
  return sorted(
    folder / algo / f"{env}.csv"
    for algo in ERL_LIB_ALGOS
    for env in ERL_LIB_ENVS
    if (folder / algo / f"{env}.csv").is_file()
  )


def read_erl_lib(path: Path, until: int | None = None) -> list[dict]:
  """One erl_lib CSV (`<algo>/<Env>.csv`) -> metrics.csv rows {algo, env, seed, env_steps,
  eval_return}.

  `step` is rounded to whole env steps (a few files store fractional steps, e.g. 5911.33);
  `seed` may be stored as "0.0". With `until`, each seed keeps its evaluations up to the
  first one at or after `until` (so that `until` stays bracketed for interpolation).
  Raises ValueError on an unknown algo folder or env file name, a missing column, or two
  evaluations of one seed at the same (rounded) step.
  """
  path = Path(path)
  algo, env = path.parent.name, path.stem
  if algo not in ERL_LIB_ALGOS:
    raise ValueError(f"{path}: unknown erl_lib algorithm folder {algo!r}")
  if env not in ERL_LIB_ENVS:
    raise ValueError(f"{path}: unknown erl_lib env {env!r}")
  by_seed: dict[int, dict[int, float]] = {}
  with open(path, newline="") as f:
    reader = csv.DictReader(f)
    missing = {"step", "reward", "seed"} - set(reader.fieldnames or ())
    if missing:
      raise ValueError(f"{path}: no column {', '.join(sorted(missing))}")
    for r in reader:
      seed, step = int(float(r["seed"])), int(round(float(r["step"])))
      evals = by_seed.setdefault(seed, {})
      if step in evals:
        raise ValueError(f"{path}: seed {seed} evaluated twice at step {step}")
      evals[step] = float(r["reward"])
  rows = []
  for seed in sorted(by_seed):
    steps = sorted(by_seed[seed])
    if until is not None:
      after = [s for s in steps if s >= until]
      steps = [s for s in steps if s <= (after[0] if after else steps[-1])]
    rows += [
      {
        "algo": ERL_LIB_ALGOS[algo],
        "env": ERL_LIB_ENVS[env],
        "seed": seed,
        "env_steps": s,
        "eval_return": by_seed[seed][s],
      }
      for s in steps
    ]
  return rows


def erl_lib_rows(folder: Path, until: int | None = None) -> list[dict]:
  """Rows of every known CSV under `folder` (an `erl_lib/` folder; none if it is absent)."""
  return [r for f in erl_lib_files(Path(folder)) for r in read_erl_lib(f, until)]


def rows(published: Path, until: int | None = None) -> list[dict]:
  """The rows that are not in `published`/metrics.csv: those of `published`/erl_lib/."""
  return erl_lib_rows(Path(published) / ERL_LIB, until)
