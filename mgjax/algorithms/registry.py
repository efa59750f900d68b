"""The algorithms by name, and what follows from them: configs with presets, validation,
run sizes, sweepable fields, CSV columns and the divergence watch.

A new algorithm is one module that builds an `Algorithm`, registered by `register` (from
any code) or by a line in `REGISTRY` (mgjax's own). What follows from the registry is read
from it when a run is set up, so an algorithm registered later counts as one of these.
"""

from typing import Any, Callable, Iterable

import jax

from mgjax import envs
from mgjax.algorithms import mbpo, mg, sac
from mgjax.algorithms.base import Algorithm, Schedule, Spec, Trainer, bind, schedule
from mgjax.config import ALIASES, PARTS, Config, ConfigError, RunConfig, check_parts, fail

REGISTRY: dict[str, Algorithm] = {
  "mg": mg.MG,
  "mle": mg.MLE,
  "ppo": mg.PPO,
  "mbpo": mbpo.MBPO,
  "mg-sac": mbpo.MG_SAC,
  "sac": sac.SAC,
}

# metrics.csv: who and when, every algorithm's metrics (first-seen order), the wall clock.
KEY_COLUMNS = ("algo", "env", "seed", "iteration", "env_steps", "eval_return", "eval_length")
# Column names of earlier versions, read as the current ones.
COLUMN_ALIASES = {"rollout_length": "branch_length"}


def register(algorithm: Algorithm, *, replace: bool = False) -> Algorithm:
  """Adds `algorithm` to REGISTRY under its name and returns it: `make_config`, the runner,
  sweeps and metrics.csv then take it as they take mgjax's own. A name that is registered
  already is refused (ValueError naming it) unless `replace`."""
  if not isinstance(algorithm, Algorithm):
    raise TypeError(f"algorithm={algorithm!r}: not an mgjax.Algorithm")
  if not isinstance(algorithm.spec, Spec):
    raise TypeError(f"algorithm.spec={algorithm.spec!r}: not an mgjax.algorithms.Spec")
  if algorithm.name in REGISTRY and not replace:
    raise ValueError(
      f"algorithm.name={algorithm.name!r}: an algorithm of that name is "
      f"registered already ({', '.join(REGISTRY)}); choose another name, or replace=True"
    )
  REGISTRY[algorithm.name] = algorithm
  return algorithm


def get_algorithm(name: str) -> Algorithm:
  """The registered algorithm `name`; ConfigError names it otherwise."""
  if name not in REGISTRY:
    fail("algo", name, f"unknown algorithm; choose one of {', '.join(REGISTRY)}")
  return REGISTRY[name]


def metric_columns(algos: Iterable[str] | None = None) -> tuple[str, ...]:
  """metrics.csv's header: the key columns, the metrics of `algos` (default every registered
  algorithm) in first-seen order, then wall_time_s."""
  names = REGISTRY if algos is None else algos
  return (
    KEY_COLUMNS
    + tuple(dict.fromkeys(m for name in names for m in get_algorithm(name).spec.metrics))
    + ("wall_time_s",)
  )


def sweepable(algo: str) -> tuple[str, ...]:
  """The Config fields a sweep of `algo` may vary (those it keeps in `state.hparams`)."""
  return get_algorithm(algo).spec.sweepable


def __getattr__(name: str):
  """METRIC_COLUMNS and SWEEPABLE, the names of earlier versions, read from the registry as
  it is now."""
  if name == "METRIC_COLUMNS":
    return metric_columns()
  if name == "SWEEPABLE":
    return {algo: a.spec.sweepable for algo, a in REGISTRY.items()}
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def preset(algo: str, env: str) -> dict[str, Any]:
  """Defaults an algorithm uses on an env where they differ from Config's: its own preset,
  under what a registered env sets for it (`mgjax.envs.register_env`'s presets)."""
  return {**get_algorithm(algo).preset(env), **envs.env_presets(env).get(algo, {})}


def run_schedule(config: Config) -> Schedule:
  """The run's sizes: env steps per iteration, iterations, chunks, env steps in all."""
  return schedule(config, get_algorithm(config.algo))


def validate(config: Config) -> Config:
  """Checks the run's fields and those of the parts the algorithm reads (`Spec.parts`), then
  the algorithm's own cross-part checks; raises ConfigError naming the first bad field and
  its value."""
  algorithm = get_algorithm(config.algo)
  parts = PARTS if algorithm.spec.parts is None else (RunConfig, *algorithm.spec.parts)
  check_parts(config, parts)
  c, initial = config, algorithm.initial_steps(config)
  if c.total_steps < initial + c.batch_steps * c.eval_every:
    fail(
      "total_steps",
      c.total_steps,
      f"smaller than one evaluation chunk (num_envs*rollout_length*eval_every = "
      f"{c.batch_steps * c.eval_every})"
      + (f" after exploration_steps = {initial}" if initial else ""),
    )
  algorithm.validate(config)
  return config


def make_config(**fields: Any) -> Config:
  """Config with the algorithm's per-env preset under the given fields, validated."""
  fields = {ALIASES.get(k, k): v for k, v in fields.items()}
  base = preset(fields.get("algo", Config.algo), fields.get("env", Config.env))
  try:
    return validate(Config(**{**base, **fields}))
  except TypeError as e:  # unknown field name
    raise ConfigError(str(e)) from None


def config_from_dict(d: dict[str, Any]) -> Config:
  """The validated Config of a config.json (or `describe`) dict, old field names included."""
  return validate(Config.from_dict(d))


def describe(config: Config) -> dict[str, Any]:
  """config.json's content: every field and the resolved sizes."""
  s = run_schedule(config)
  return {
    **config.to_dict(),
    "resolved": {
      "batch_steps": s.batch_steps,
      "num_iterations": s.num_iterations,
      "env_steps": s.env_steps,
    },
  }


def watched(config: Config) -> tuple[str, ...]:
  """The metrics whose non-finite value is a numerical blow-up, for this config."""
  return tuple(get_algorithm(config.algo).spec.watched(config))


def make_trainer(
  config: Config, progress: Callable | None = None, env_info: envs.EnvInfo | None = None
) -> Trainer:
  """The registered algorithm of `config.algo`, bound to the validated config: pure
  `init(key, hparams=None)` and `chunk(state)`, vmappable over runs."""
  config = validate(config)
  return bind(config, get_algorithm(config.algo), progress, env_info)


def make_train(
  config: Config, progress: Callable | None = None, env_info: envs.EnvInfo | None = None
):
  """Returns a pure `train(key) -> (final_state, metrics)` for any registered algorithm;
  metrics leaves are stacked [num_chunks, eval_every] per iteration and [num_chunks] per
  evaluation. `jax.jit(jax.vmap(train))(keys)` trains many seeds in one program.

  `progress`: called with the iteration reached after each iteration, from inside the
  program; `mgjax.run.progress.Progress(config)`, the command line's, prints it, and with
  `with progress:` a line every 10 s while the program compiles. None (the default) builds
  the program without a callback."""
  trainer = make_trainer(config, progress, env_info)

  def train(key):
    state = trainer.init(key)
    return jax.lax.scan(lambda s, _: trainer.chunk(s), state, None, length=trainer.num_chunks)

  return train
