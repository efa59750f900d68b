"""The algorithm registry and the package's import graph."""

import ast
import dataclasses
import math
import re
import types
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import pytest
from flax import struct

import mgjax
from mgjax import algorithms, envs
from mgjax.algorithms import base, mg
from mgjax.config import Config, ConfigError

PACKAGE = Path(mgjax.__file__).parent


def _module_name(path: Path) -> str:
  parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
  """The mgjax modules `path` imports anywhere in it (function bodies included)."""
  found = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Import):
      names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module:
      # `from mgjax.x import y` imports module mgjax.x.y where that is a module (the package
      # mgjax.x is only its parent), and mgjax.x itself where y is a name defined in it.
      subs = [f"{node.module}.{a.name}" for a in node.names]
      names = subs + ([node.module] if any(m not in modules for m in subs) else [])
    else:
      continue
    found |= {n for n in names if n in modules}
  return found


def import_graph() -> dict[str, set[str]]:
  files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
  return {name: _imports(path, set(files)) - {name} for name, path in files.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
  """A cycle of the graph as a list of nodes (first == last), or None."""
  state: dict[str, int] = {}  # 1: on the current path, 2: done
  path: list[str] = []

  def visit(node):
    state[node] = 1
    path.append(node)
    for nxt in sorted(graph[node]):
      if state.get(nxt) == 1:
        return path[path.index(nxt) :] + [nxt]
      if nxt not in state and (cycle := visit(nxt)):
        return cycle
    path.pop()
    state[node] = 2
    return None

  for node in sorted(graph):
    if node not in state and (cycle := visit(node)):
      return cycle
  return None


def test_find_cycle_finds_one():
  assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
  assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_the_package_has_no_import_cycle():
  graph = import_graph()
  # A package __init__ importing its own modules is not a cycle unless they import it back;
  # the graph keeps those edges, so a module importing its package's __init__ would show.
  assert "mgjax.algorithms.registry" in graph and graph["mgjax.algorithms.registry"]
  assert find_cycle(graph) is None, find_cycle(graph)


def test_library_modules_do_not_reach_up_the_layers():
  """Lower layers never import the runner or the algorithms; neither imports the analyses
  built on top of them (`mgjax.analysis`: curves and published curves read from run
  folders), which only the command line (`mgjax.cli`, `python -m mgjax`, the top) imports."""
  graph = import_graph()
  upper = ("mgjax.run", "mgjax.algorithms", "mgjax.analysis")
  top = ("mgjax", "mgjax.__main__")
  for name, deps in graph.items():
    if not name.startswith((*upper, "mgjax.cli")) and name not in top:
      assert not {d for d in deps if d.startswith(upper)}, name
    if name.startswith("mgjax.algorithms"):
      assert not {d for d in deps if d.startswith(("mgjax.run", "mgjax.analysis"))}, name
    if name.startswith("mgjax.run"):
      assert not {d for d in deps if d.startswith("mgjax.analysis")}, name
    if not name.startswith(("mgjax.analysis", "mgjax.cli")):
      assert not {d for d in deps if d.startswith("mgjax.analysis")}, name


def _imported_names(source: str) -> set[str]:
  """Every module name `source` imports anywhere in it (function bodies included): absolute
  `import` and `from ... import` statements, and `importlib.import_module` / `__import__`
  calls with a literal name."""
  found = set()
  for node in ast.walk(ast.parse(source)):
    if isinstance(node, ast.Import):
      found |= {a.name for a in node.names}
    elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
      found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
      func = node.func
      called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
      if called in ("import_module", "__import__") and isinstance(node.args[0].value, str):
        found.add(node.args[0].value)
  return found


def lab_imports(package: Path) -> dict[str, set[str]]:
  """Per file of `package` (its path from the package's parent), what it imports from the
  research harness: `lab` (experiments/lab/, imported as `lab` by the scripts beside it) or
  `experiments`; files that import none are left out."""
  found = {}
  for path in sorted(package.rglob("*.py")):
    names = _imported_names(path.read_text())
    bad = {n for n in names if n.split(".")[0] == "lab" or n.startswith("experiments")}
    if bad:
      found[path.relative_to(package.parent).as_posix()] = bad
  return found


def test_lab_imports_finds_every_way_in(tmp_path):
  pkg = tmp_path / "pkg"
  pkg.mkdir()
  sources = {
    "a.py": "import lab.probe\n",
    "b.py": "def f():\n  from lab import suites\n",
    "c.py": "from experiments.lab import speed\n",
    "d.py": "import importlib\nimportlib.import_module('lab.device_check')\n",
    "e.py": "import labels, experimental\nfrom mgjax import lab\nfrom . import lab\n",
  }
  for name, source in sources.items():
    (pkg / name).write_text(source)
  assert lab_imports(pkg) == {
    "pkg/a.py": {"lab.probe"},
    "pkg/b.py": {"lab", "lab.suites"},
    "pkg/c.py": {"experiments.lab", "experiments.lab.speed"},
    "pkg/d.py": {"lab.device_check"},
  }


def test_the_library_never_imports_the_lab():
  """mgjax holds what a user imports; the research harness (experiments/lab/: the probes,
  the timings, the benchmark suites, the accelerator check) sits beside the scripts that use
  it and builds on the library, never the other way round."""
  assert (PACKAGE / "run" / "experiment.py").exists()  # the scan reads the package's files
  assert lab_imports(PACKAGE) == {}


def test_registry_is_the_one_list_of_algorithms():
  assert list(algorithms.REGISTRY) == ["mg", "mle", "ppo", "mbpo", "mg-sac", "sac"]
  for name, algorithm in algorithms.REGISTRY.items():
    assert isinstance(algorithm, base.Algorithm) and algorithm.name == name
    assert algorithms.SWEEPABLE[name] == algorithm.spec.sweepable
    # Every metric an algorithm reports is a CSV column; every sweepable name a Config field.
    assert set(algorithm.spec.metrics) <= set(algorithms.METRIC_COLUMNS)
    assert set(algorithm.spec.sweepable) <= {f.name for f in dataclasses.fields(Config)}
  assert algorithms.METRIC_COLUMNS[:3] == ("algo", "env", "seed")
  assert algorithms.METRIC_COLUMNS[-1] == "wall_time_s"
  assert len(set(algorithms.METRIC_COLUMNS)) == len(algorithms.METRIC_COLUMNS)


def test_unknown_algorithm_names_the_field():
  with pytest.raises(ConfigError, match=r"^algo='nope': unknown algorithm; choose one of mg, "):
    algorithms.make_config(algo="nope")


def test_watched_losses_follow_the_config():
  assert algorithms.watched(Config(algo="ppo")) == ("policy_loss", "value_loss")
  assert algorithms.watched(Config(algo="mg")) == (
    "policy_loss",
    "value_loss",
    "model_nll",
    "mle_loss",
    "mg_loss",
  )
  assert algorithms.watched(Config(algo="mle", mle_steps=0)) == (
    "policy_loss",
    "value_loss",
    "model_nll",
  )
  assert algorithms.watched(Config(algo="mg-sac")) == (
    "critic_loss",
    "actor_loss",
    "model_nll",
    "mg_loss",
  )
  assert algorithms.watched(Config(algo="mbpo")) == ("critic_loss", "actor_loss", "model_nll")
  assert algorithms.watched(Config(algo="sac")) == ("critic_loss", "actor_loss")


def test_schedule_counts_exploration_only_for_algorithms_that_explore():
  # mg: round(100000 / (32·32·10)) = 10 chunks of 10 iterations of 1024 steps.
  s = algorithms.run_schedule(Config(algo="mg"))
  assert s == base.Schedule(1024, 0, 10, 100, 102_400)
  # mbpo on hopper: 5000 random steps, then round(95000 / (250·4)) = 95 chunks.
  s = algorithms.run_schedule(algorithms.make_config(algo="mbpo", env="hopper"))
  assert (s.initial_steps, s.num_chunks, s.env_steps) == (5000, 95, 100_000)


@struct.dataclass
class _RandomState:
  env_state: Any
  key: jax.Array
  iteration: jax.Array
  env_steps: jax.Array
  hparams: dict


def _random_algorithm() -> base.Algorithm:
  """Uniform random actions: the smallest algorithm the interface admits."""

  def setup(config, info):
    return envs.TrainingEnv(info, config.num_envs), info, config.rollout_length

  def init(su, key, hparams=None):
    train_env, _, _ = su
    return _RandomState(
      train_env.reset(key), key, jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32), {}
    )

  def iteration(su, state):
    train_env, info, length = su
    key, *step_keys = jax.random.split(state.key, length + 1)
    env_state = state.env_state
    for k in step_keys:
      action = jax.random.uniform(k, (train_env.num_envs, info.action_size), minval=-1.0)
      env_state = train_env.step(env_state, action)
    steps = state.env_steps + length * train_env.num_envs
    state = state.replace(
      env_state=env_state, key=key, iteration=state.iteration + 1, env_steps=steps
    )
    return state, {"train_return": base.mean_episode_return(env_state), "env_steps": steps}

  def make_policy(su, params, deterministic=True):
    _, info, _ = su
    return lambda obs, key=None: jnp.zeros((obs.shape[0], info.action_size))

  def evaluate(su, state, key):
    out = envs.evaluate(su[1], make_policy(su, {}), key, 2)
    return {"eval_return": out["return"], "eval_length": out["length"]}

  return base.Algorithm(
    name="random",
    setup=setup,
    init=init,
    iteration=iteration,
    evaluate=evaluate,
    policy_params=lambda state: {},
    make_policy=make_policy,
    validate=lambda c: None,
    preset=lambda env: {"num_envs": 2},
    spec=base.Spec(metrics=("train_return",), sweepable=(), watched=lambda c: ()),
  )


def test_a_new_algorithm_is_one_registry_entry(monkeypatch):
  """An algorithm written against the interface runs through make_config and make_train with
  nothing else to edit but its registry entry."""
  monkeypatch.setitem(algorithms.REGISTRY, "random", _random_algorithm())
  config = algorithms.make_config(
    algo="random", env="pointmass", rollout_length=4, eval_every=2, total_steps=32
  )
  assert config.num_envs == 2  # its preset
  # 32 env steps in chunks of 2 iterations x 2 envs x 4 steps: 2 chunks.
  state, metrics = jax.jit(mgjax.make_train(config))(jax.random.key(0))
  assert metrics["eval"]["iteration"].tolist() == [2, 4]
  assert metrics["eval"]["env_steps"].tolist() == [16, 32]
  assert metrics["iterations"]["train_return"].shape == (2, 2)
  assert int(state.env_steps) == 32


def test_describe_adds_the_resolved_sizes():
  d = algorithms.describe(Config(algo="mg"))
  assert d["resolved"] == {"batch_steps": 1024, "num_iterations": 100, "env_steps": 102_400}
  assert algorithms.config_from_dict(d) == Config(algo="mg")


def test_importing_mgjax_starts_no_jax_backend():
  """`jax.distributed.initialize` must come before any JAX computation, so importing the
  package (and its runner) may not create arrays."""
  import subprocess
  import sys

  code = (
    "import mgjax, mgjax.run\n"
    "from jax._src import xla_bridge\n"
    "assert not xla_bridge.backends_are_initialized()\n"
  )
  subprocess.run([sys.executable, "-c", code], check=True)


# ------------------------------------------------------- an algorithm registered elsewhere
def _design_recipe(heading: str = "### Adding an algorithm") -> str:
  """The code of a section of docs/design.md (default "Adding an algorithm"), as written
  there."""
  text = (PACKAGE.parent / "docs" / "design.md").read_text()
  section = re.split(r"\n##+ ", text.split(heading + "\n", 1)[1], maxsplit=1)[0]
  (code,) = re.findall(r"```python\n(.*?)```", section, re.S)
  return code


@pytest.fixture
def noise():
  """docs/design.md's recipe as a module of its own, which registers "noise"; taken out of
  the registry afterwards."""
  module = types.ModuleType("noise")
  try:
    exec(compile(_design_recipe(), "docs/design.md", "exec"), module.__dict__)
    yield module.NOISE
  finally:
    algorithms.REGISTRY.pop("noise", None)


def test_register_refuses_a_taken_name(noise):
  assert algorithms.get_algorithm("noise") is noise and mgjax.REGISTRY["noise"] is noise
  with pytest.raises(
    ValueError,
    match=r"^algorithm.name='noise': an algorithm of that name "
    r"is registered already \(mg, .*, noise\)",
  ):
    algorithms.register(noise)
  with pytest.raises(ValueError, match=r"^algorithm.name='mg'"):
    mgjax.register(noise._replace(name="mg"))
  assert algorithms.get_algorithm("mg") is mg.MG
  with pytest.raises(TypeError, match="not an mgjax.Algorithm"):
    algorithms.register({"name": "dict"})


def test_an_algorithm_registered_elsewhere_runs_sweeps_and_writes_its_metrics(noise, tmp_path):
  from mgjax.run import check_sweep, prepare_out_dir, run
  from mgjax.run.outputs import read_metrics
  from mgjax.run.placement import cpu_devices, cpu_layout

  # What follows from the registry, read when asked, under the current and earlier names.
  assert algorithms.sweepable("noise") == algorithms.SWEEPABLE["noise"] == ("init_log_std",)
  columns = algorithms.metric_columns()
  assert columns == algorithms.METRIC_COLUMNS and columns[-2:] == ("action_std", "wall_time_s")
  assert algorithms.metric_columns(["noise"]) == base_columns("train_return", "action_std")
  assert cpu_devices("noise", 4, cores=2) == cpu_layout(4, 2)  # the default placement
  # 128 env steps per seed: 2 chunks of 2 iterations x 4 envs x 8 steps.
  config = mgjax.make_config(
    algo="noise",
    env="pointmass",
    num_envs=4,
    rollout_length=8,
    eval_every=2,
    total_steps=128,
    num_eval_envs=2,
  )
  quiet = dict(progress=False, log=lambda *a: None, devices=1)
  summary = run(config, seeds=[0, 1], out=prepare_out_dir(tmp_path / "run", False), **quiet)
  assert summary["status"] == "finished" and summary["total_env_steps"] == 128
  rows = read_metrics(tmp_path / "run" / "metrics.csv")
  assert [(r["seed"], r["env_steps"]) for r in rows] == [
    ("0", "64"),
    ("1", "64"),
    ("0", "128"),
    ("1", "128"),
  ]
  assert all(float(r["action_std"]) == pytest.approx(math.exp(-0.5)) for r in rows)
  # A sweep of its sweepable field: one program, a folder per value, each value as data.
  with pytest.raises(
    ConfigError, match="not sweepable for algo='noise'; choose from init_log_std$"
  ):
    check_sweep(config, {"learning_rate": [1e-3]})
  run(
    config,
    seeds=[0, 1],
    out=prepare_out_dir(tmp_path / "sweep", False),
    sweep={"init_log_std": [-1.0, 0.0]},
    **quiet,
  )
  for value in (-1.0, 0.0):
    rows = read_metrics(tmp_path / "sweep" / f"init_log_std={value:g}" / "metrics.csv")
    assert len(rows) == 4 and {r["algo"] for r in rows} == {"noise"}
    assert all(float(r["action_std"]) == pytest.approx(math.exp(value)) for r in rows)


def base_columns(*metrics: str) -> tuple[str, ...]:
  return algorithms.registry.KEY_COLUMNS + metrics + ("wall_time_s",)


# ------------------------------------------------------- a variant, from the command line
TRAIN = PACKAGE.parent / "experiments" / "train.py"


@pytest.fixture
def wide_mg(tmp_path):
  """docs/design.md's variant recipe as a file of the user's; unregistered afterwards."""
  import sys

  path = tmp_path / "wide_mg.py"
  path.write_text(_design_recipe("### A variant of an algorithm, and a command line that sees it"))
  try:
    yield path
  finally:
    algorithms.REGISTRY.pop("wide-mg", None)
    sys.modules.pop("wide_mg", None)


@pytest.mark.slow
def test_a_variant_of_mg_runs_from_train_import(wide_mg, tmp_path):
  """derive(): mg's loop under another name, with its own preset and metric; the command
  line sees it through --import, and mg's own checks still apply to it."""
  from chunked import POINTMASS  # the smoke suite's small pointmass runs
  from inprocess import run_main

  from mgjax.run.outputs import read_metrics

  out = tmp_path / "run"
  args = ["--import", wide_mg, "--algo", "wide-mg", *POINTMASS, "--out", out, "--devices", "1"]
  proc = run_main(TRAIN, *args)
  assert proc.returncode == 0, proc.stderr[-3000:]
  rows = read_metrics(out / "metrics.csv")
  assert {r["algo"] for r in rows} == {"wide-mg"} and len(rows) == 2
  norms = [float(r["policy_norm"]) for r in rows]  # its own metric, a column of its own
  assert all(math.isfinite(n) and n > 0 for n in norms) and norms[0] != norms[1]
  assert all(math.isfinite(float(r["mg_loss"])) for r in rows)  # mg's model stage ran
  # Its preset, over mg's: on hopper only.
  assert algorithms.make_config(algo="wide-mg", env="hopper").policy_hidden == (128, 128)
  assert algorithms.make_config(algo="mg", env="hopper").policy_hidden == Config.policy_hidden
  assert algorithms.make_config(algo="wide-mg", env="pointmass").policy_hidden == (
    Config.policy_hidden
  )
  # mg's checks, which read the loop it runs, not its name.
  with pytest.raises(ConfigError, match="^mg_rollouts=1: the score estimator"):
    algorithms.make_config(algo="wide-mg", env="pointmass", mg_rollouts=1)
  assert algorithms.watched(Config(algo="wide-mg")) == algorithms.watched(Config(algo="mg"))
  # Its run's policy plays with `evaluate --import`, which registers it again.
  algorithms.REGISTRY.pop("wide-mg")
  evaluate = PACKAGE.parent / "experiments" / "evaluate.py"
  proc = run_main(evaluate, out, "--import", wide_mg, "--episodes", "2", "--no-compile-cache")
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "wide-mg" in algorithms.REGISTRY


def test_train_import_of_a_missing_module_is_one_line_exit_2(tmp_path):
  from inprocess import run_main

  proc = run_main(TRAIN, "--import", "no_such_module_here", "--algo", "mg")
  assert proc.returncode == 2
  (line,) = [s for s in proc.stderr.splitlines() if s.strip()]
  assert "import='no_such_module_here': ModuleNotFoundError" in line
  proc = run_main(TRAIN, "--import", tmp_path / "absent.py")
  assert proc.returncode == 2 and "absent.py" in proc.stderr and "Traceback" not in proc.stderr


def test_derive_replaces_fields_and_refuses_unknown_ones():
  variant = algorithms.derive(mg.MLE, "mle-2", color="C9", metrics=("extra",))
  assert variant.name == "mle-2" and variant.setup is mg.MLE.setup
  assert variant.spec.color == "C9" and variant.spec.metrics == mg.MLE.spec.metrics + ("extra",)
  assert variant.spec.sweepable == mg.MLE.spec.sweepable
  assert algorithms.derive(mg.MLE, "mle-3").spec.color is None  # not mle's colour
  with pytest.raises(TypeError, match=r"\['colour'\]: neither an Algorithm nor a Spec field"):
    algorithms.derive(mg.MLE, "mle-4", colour="C9")
  with pytest.raises(TypeError, match="not an mgjax.Algorithm"):
    algorithms.derive("mle", "mle-5")


def test_register_replace_takes_the_name_over(noise):
  again = noise._replace(spec=noise.spec._replace(color="C8"))
  assert algorithms.register(again, replace=True) is again
  assert algorithms.get_algorithm("noise").spec.color == "C8"


def test_no_module_outside_an_algorithms_own_tests_its_name():
  """The runner reads an algorithm's Spec: no `algo == "mbpo"` or `in ("mbpo", ...)` in
  mgjax/run, mgjax/cli or the registry."""
  names = "|".join(re.escape(n) for n in ("mg", "mle", "ppo", "mbpo", "mg-sac", "sac"))
  pattern = re.compile(rf"algo\s*(==|!=|in|not in)\s*[(\[{{]?\s*\"({names})\"")
  for folder in ("run", "cli"):
    for path in (PACKAGE / folder).rglob("*.py"):
      assert not pattern.search(path.read_text()), path
  assert not pattern.search((PACKAGE / "algorithms" / "registry.py").read_text())
