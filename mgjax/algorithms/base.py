"""The algorithm interface and the one generic trainer that runs every algorithm.

An `Algorithm` is, as optax's `GradientTransformation`, a NamedTuple of pure functions,
plus the config functions it answers for and what the runner reads about it (`Spec`):

    setup(config, env) -> setup                     static parts, built once
    init(setup, key, hparams) -> state              a fresh state (one run)
    iteration(setup, state) -> (state, metrics)     one collect–fit–optimise iteration
    evaluate(setup, state, key) -> {"eval_return", "eval_length"}
    policy_params(state) -> what the acting policy reads; make_policy(setup, that,
      deterministic) -> act(obs [B, obs_size], key) -> actions   (`mgjax.load_policy`)

`make_trainer(config, algorithm)` binds them into pure `init(key)` and `chunk(state)`
(eval_every iterations as one `lax.scan`, then an evaluation); `make_train` scans the
chunks, so `jax.jit(jax.vmap(train))(keys)` trains many seeds in one program.
"""

import functools
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
from jax.experimental import io_callback

from mgjax import envs
from mgjax.config import Config

State = Any
Metrics = dict[str, jax.Array]


def _no_transients(config: Config, env: Any) -> dict:
  return {}


class Spec(NamedTuple):
  """What the runner reads about an algorithm, beside its pure functions: nothing outside an
  algorithm's own module tests its name.

  Attributes:
    metrics: the per-iteration metric names it reports (its metrics.csv columns).
    sweepable: Config fields it keeps in the state as data (`state.hparams`), so that one
      program can vmap a sweep over them.
    watched: config -> the metrics whose non-finite value is a numerical blow-up.
    cpu_split: whether several runs on a CPU go one XLA device per core by default
      (`mgjax.run.placement.cpu_split`); False for the SAC family, whose loop gains nothing
      from it.
    transients: (config, env) -> {name: (bytes per run, Config fields that set them)}, the
      largest temporary arrays of an iteration, for the memory check (`mgjax.run.memory`).
    color: its colour in figures (a matplotlib colour, `mgjax.analysis.curves`); None: one
      of the colour cycle's that no drawn algorithm has.
    parts: the config parts it reads besides `RunConfig` (`mgjax.config.PARTS`), the only
      ones `validate` checks; None: every part.
  """

  metrics: tuple[str, ...]
  sweepable: tuple[str, ...]
  watched: Callable[[Config], Sequence[str]]
  cpu_split: bool = True
  transients: Callable[[Config, Any], dict[str, tuple[int, tuple[str, ...]]]] = _no_transients
  color: str | None = None
  parts: tuple[type, ...] | None = None


class Algorithm(NamedTuple):
  """An algorithm: its pure functions, the config functions it answers for, and its `Spec`.

  Attributes:
    name: the registry name (`Config.algo`).
    setup: (config, env) -> the algorithm's static parts (networks, optimizers, settings).
    init: (setup, key, hparams) -> state; `hparams` overrides sweepable settings.
    iteration: (setup, state) -> (state, per-iteration metrics, including "env_steps").
    evaluate: (setup, state, key) -> {"eval_return", "eval_length"}.
    policy_params: state -> the part of it the acting policy reads, as nested dicts named
      after the state's fields (what a checkpoint restores for `mgjax.load_policy`).
    make_policy: (setup, policy_params, deterministic) -> act(obs [B, obs_size], key) ->
      actions [B, action_size] in the env's range: the policy's mean (the evaluation's
      action; key unused) or a sample.
    validate: config -> None; raises ConfigError for settings this algorithm cannot run.
    preset: env name -> the Config fields it sets by default on that env.
    spec: what the runner reads about it (metrics, sweepable fields, ...).
    initial_steps: config -> env steps taken in `init`, before the first iteration.

  An algorithm's functions never read `config.algo` to decide what to do, so that
  `derive` can give a variant another name.
  """

  name: str
  setup: Callable[[Config, envs.EnvInfo], Any]
  init: Callable[[Any, jax.Array, dict], State]
  iteration: Callable[[Any, State], tuple[State, Metrics]]
  evaluate: Callable[[Any, State, jax.Array], Metrics]
  policy_params: Callable[[State], dict]
  make_policy: Callable[..., Callable[[jax.Array, jax.Array | None], jax.Array]]
  validate: Callable[[Config], None]
  preset: Callable[[str], dict[str, Any]]
  spec: Spec
  initial_steps: Callable[[Config], int] = lambda config: 0


def loop_algorithm(kind: str, module: Any, preset, spec: Spec, **fields: Any) -> Algorithm:
  """One of the loops of an algorithm module (mg.py's mg, mle and ppo; mbpo.py's mbpo and
  mg-sac) as an Algorithm named `kind`: the module's functions, its `setup`, `validate` and
  `spec.watched` bound to `kind=kind`, so that none of them reads `config.algo`."""
  bound = lambda fn: functools.partial(fn, kind=kind)
  return Algorithm(
    name=kind,
    setup=bound(module.setup),
    init=module.init,
    iteration=module.iteration,
    evaluate=module.evaluate,
    policy_params=module.policy_params,
    make_policy=module.make_policy,
    validate=bound(module.validate),
    preset=preset,
    spec=spec._replace(watched=bound(spec.watched)),
    **fields,
  )


def derive(
  base: Algorithm,
  name: str,
  *,
  preset: dict[str, dict[str, Any]] | Callable[[str], dict[str, Any]] | None = None,
  metrics: Sequence[str] = (),
  **changes: Any,
) -> Algorithm:
  """A variant of `base` named `name`: base's functions (which keep base's behaviour under
  the new name), with

    preset: {env: fields} or env -> fields, laid over base's preset;
    metrics: metric names the variant reports besides base's (its `iteration` must give
      them, e.g. one that calls base's and adds to its metrics);
    changes: Algorithm fields (iteration, validate, ...) or Spec fields (color, watched,
      ...) to replace.

  The variant still has to be registered (`mgjax.register`) to run by name."""
  if not isinstance(base, Algorithm):
    raise TypeError(f"base={base!r}: not an mgjax.Algorithm")
  spec_changes = {k: changes.pop(k) for k in list(changes) if k in Spec._fields}
  unknown = set(changes) - set(Algorithm._fields)
  if unknown:
    raise TypeError(f"{sorted(unknown)}: neither an Algorithm nor a Spec field")
  if preset is not None:
    extra = preset if callable(preset) else lambda env, table=dict(preset): table.get(env, {})
    changes["preset"] = lambda env, own=base.preset: {**own(env), **extra(env)}
  spec_changes["metrics"] = tuple(
    dict.fromkeys(spec_changes.get("metrics", base.spec.metrics) + tuple(metrics))
  )
  spec_changes.setdefault("color", None)  # not base's colour: a colour of its own in figures
  return base._replace(name=name, spec=base.spec._replace(**spec_changes), **changes)


class Schedule(NamedTuple):
  """A run's sizes, derived once from its config and algorithm."""

  batch_steps: int  # real env steps per iteration per run
  initial_steps: int  # env steps before the first iteration
  num_chunks: int  # evaluations
  num_iterations: int
  env_steps: int  # real env steps per run in all


def schedule(config: Config, algorithm: Algorithm) -> Schedule:
  """total_steps rounded to whole chunks of eval_every iterations, after initial steps."""
  initial = algorithm.initial_steps(config)
  batch = config.batch_steps
  chunks = max(1, round((config.total_steps - initial) / (batch * config.eval_every)))
  iterations = chunks * config.eval_every
  return Schedule(batch, initial, chunks, iterations, initial + iterations * batch)


def init_hparams(
  algo: str, defaults: dict[str, float], overrides: dict | None = None
) -> dict[str, jax.Array]:
  """The sweepable settings (`defaults`: name -> the config's value) as float32 scalars, with
  `overrides` (possibly traced) in place of the config's values."""
  unknown = set(overrides or {}) - set(defaults)
  if unknown:
    raise ValueError(
      f"{sorted(unknown)}: not sweepable for algo={algo!r} (sweepable: {', '.join(defaults)})"
    )
  return {n: jnp.asarray((overrides or {}).get(n, v), jnp.float32) for n, v in defaults.items()}


class Stage(NamedTuple):
  """A named step of a training iteration: fn(setup, carry) -> carry. The carry is a dict of
  arrays: the train state under "state", the iteration's keys under "keys", and what earlier
  stages made (the batch, advantages, metrics, ...). An iteration is its stages run in order
  (`run_stages`); a benchmark runs each as a program of its own on the carry it gets."""

  name: str
  fn: Callable[[Any, dict], dict]


def run_stages(stages: Sequence[Stage], su: Any, carry: dict) -> dict:
  """The carry after every stage, in order: carry ← stage.fn(su, carry)."""
  for stage in stages:
    carry = stage.fn(su, carry)
  return carry


def mean_episode_return(env_state) -> jax.Array:
  """Mean over envs of the last finished episode's return (NaN before any finished)."""
  done = env_state.info["episodes_done"] > 0
  total = jnp.sum(jnp.where(done, env_state.info["last_episode_return"], 0.0))
  return jnp.where(jnp.any(done), total / jnp.maximum(jnp.sum(done), 1), jnp.float32(jnp.nan))


def run_chunk(
  algorithm: Algorithm, setup: Any, eval_every: int, state: State, progress: Callable | None = None
):
  """eval_every iterations (a lax.scan) followed by one evaluation
  -> (state, {"iterations": metrics [eval_every], "eval": metrics})."""

  def one(s, _):
    s, metrics = algorithm.iteration(setup, s)
    if progress is not None:  # host-side progress; unordered, so it costs no serialisation.
      io_callback(progress, None, s.iteration, ordered=False)
    return s, metrics

  state, iters = jax.lax.scan(one, state, None, length=eval_every)
  ekey, key = jax.random.split(state.key)
  evals = algorithm.evaluate(setup, state, ekey)
  evals.update(env_steps=state.env_steps, iteration=state.iteration)
  return state.replace(key=key), {"iterations": iters, "eval": evals}


class Trainer(NamedTuple):
  """init(key, hparams=None) -> state; chunk(state) -> (state, metrics); both pure and
  vmappable."""

  algorithm: Algorithm
  config: Config
  setup: Any
  schedule: Schedule
  init: Callable[..., State]
  chunk: Callable[[State], tuple[State, dict]]

  @property
  def num_chunks(self) -> int:
    return self.schedule.num_chunks


def bind(
  config: Config,
  algorithm: Algorithm,
  progress: Callable | None = None,
  env_info: envs.EnvInfo | None = None,
) -> Trainer:
  """The algorithm's functions bound to one validated config (and its env)."""
  info = env_info or envs.make_env(
    config.env,
    backend=config.backend,
    episode_length=config.episode_length or None,
    distractor_dims=config.distractor_dims,
  )
  setup = algorithm.setup(config, info)
  return Trainer(
    algorithm,
    config,
    setup,
    schedule(config, algorithm),
    functools.partial(algorithm.init, setup),
    functools.partial(run_chunk, algorithm, setup, config.eval_every, progress=progress),
  )
