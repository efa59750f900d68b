"""The command lines' persistent compilation cache (`mgjax.run.compile_cache`): where it
lives, how it is turned off, and that a run paused and resumed with its programs loaded
from the cache (compiled code and traced programs, `mgjax.run.program_cache`) gives the
numbers of the run that compiled them, and of a run without the cache, bit for bit."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import pytest
from paths import ROOT

from mgjax.run import compile_cache

# A short ppo run: 2 evaluation chunks of 2 iterations x 32 env steps.
PPO = (
  "--algo",
  "ppo",
  "--env",
  "pointmass",
  "--total-steps",
  "128",
  "--num-envs",
  "4",
  "--rollout-length",
  "8",
  "--eval-every",
  "2",
  "--num-eval-envs",
  "2",
  "--num-minibatches",
  "2",
  "--no-progress",
)
# The paused and resumed run: 2 seeds of PPO. The cache and its traced programs are the
# runner's, the same for every algorithm (an mbpo run is paused and resumed in test_resume.py).
RESUME = (*PPO, "--seeds", "2")


def _train(*args, env: dict[str, str]):
  base = {
    k: v
    for k, v in os.environ.items()
    if k not in ("JAX_COMPILATION_CACHE_DIR", compile_cache.ENV_VAR, "XLA_FLAGS")
  }
  return subprocess.run(
    [sys.executable, "experiments/train.py", *map(str, args)],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=900,
    env={**base, "PYTHONPATH": str(ROOT), **env},
  )


def _rows(out: Path) -> list[dict[str, str]]:
  with open(out / "metrics.csv", newline="") as f:
    return [{k: v for k, v in r.items() if k != "wall_time_s"} for r in csv.DictReader(f)]


def _files(folder: Path) -> list[Path]:
  return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def test_where_the_cache_lives(tmp_path):
  host = compile_cache.host_key()
  home = Path.home()
  assert compile_cache.cache_dir(environ={}) == home / ".cache" / "mgjax" / "xla" / host
  assert compile_cache.cache_dir(environ={"XDG_CACHE_HOME": "/c"}) == Path("/c/mgjax/xla") / host
  # JAX's own variable is respected as it is; MGJAX_COMPILE_CACHE moves the cache.
  assert compile_cache.cache_dir(environ={"JAX_COMPILATION_CACHE_DIR": "/j"}) == Path("/j")
  assert (
    compile_cache.cache_dir(
      environ={"JAX_COMPILATION_CACHE_DIR": "/j", "MGJAX_COMPILE_CACHE": "/m"}
    )
    == Path("/m") / host
  )
  # Off: the flag, or the variable's 0 / off (whatever JAX's variable says).
  for value in ("0", "off", "OFF", "no", "false"):
    assert (
      compile_cache.cache_dir(
        environ={"MGJAX_COMPILE_CACHE": value, "JAX_COMPILATION_CACHE_DIR": "/j"}
      )
      is None
    )
  assert compile_cache.cache_dir(False, environ={"MGJAX_COMPILE_CACHE": "/m"}) is None


def test_host_key_names_the_cpu_by_its_vector_extension_and_flags():
  info = "processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma\n\nprocessor\t: 1\nflags\t\t: x\n"
  key = compile_cache.host_key(info)
  assert key.startswith("avx2-") and len(key) == len("avx2-") + 8
  assert compile_cache.host_key(info.replace("fma", "avx512f")).startswith("avx512f-")
  assert compile_cache.host_key(info.replace("fma", "fma bmi2")) != key  # other flags
  assert compile_cache.host_key(info.replace("fpu sse2", "sse2 fpu")) == key  # same set


@pytest.fixture
def jax_settings():
  """The process's cache settings, restored after the test."""
  names = (
    "jax_enable_compilation_cache",
    "jax_compilation_cache_dir",
    "jax_persistent_cache_min_compile_time_secs",
    "jax_persistent_cache_min_entry_size_bytes",
  )
  before = {n: getattr(jax.config, n) for n in names}
  yield
  for n, v in before.items():
    jax.config.update(n, v)


def test_enable_sets_jax_and_turns_it_off(tmp_path, jax_settings):
  path = compile_cache.enable(environ={"MGJAX_COMPILE_CACHE": str(tmp_path / "c")})
  assert path == tmp_path / "c" / compile_cache.host_key() and path.is_dir()
  assert compile_cache.current() == str(path)
  assert jax.config.jax_persistent_cache_min_compile_time_secs == 0.0  # every program
  assert compile_cache.enable(environ={"MGJAX_COMPILE_CACHE": "off"}) is None
  assert compile_cache.current() is None and not jax.config.jax_enable_compilation_cache
  assert compile_cache.enable(False, environ={}) is None
  # A folder that cannot be made: one line naming the variable; the default folder that
  # cannot be made leaves the run without a cache.
  (tmp_path / "file").write_text("")
  with pytest.raises(compile_cache.CacheError, match="MGJAX_COMPILE_CACHE='.*file'"):
    compile_cache.enable(environ={"MGJAX_COMPILE_CACHE": str(tmp_path / "file")})
  assert compile_cache.enable(environ={"XDG_CACHE_HOME": str(tmp_path / "file")}) is None


@pytest.mark.slow
@pytest.mark.parametrize("how", ["flag", "variable"])
def test_the_flag_and_the_variable_turn_it_off(tmp_path, how):
  cache = tmp_path / "cache"
  if how == "flag":
    extra, env = ["--no-compile-cache"], {"MGJAX_COMPILE_CACHE": str(cache)}
  else:
    extra, env = (
      [],
      {
        "MGJAX_COMPILE_CACHE": "off",
        "JAX_COMPILATION_CACHE_DIR": str(cache),
        "XDG_CACHE_HOME": str(cache),
      },
    )
  proc = _train(*PPO, *extra, "--out", tmp_path / "run", env=env)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert _files(cache) == []
  assert json.loads((tmp_path / "run" / "summary.json").read_text())["compile_cache"] is None


@pytest.mark.slow
def test_resumed_run_loads_its_programs_and_gives_the_same_numbers(tmp_path):
  cache = tmp_path / "cache"
  env = {"MGJAX_COMPILE_CACHE": str(cache)}
  whole = _train(*RESUME, "--out", tmp_path / "whole", env=env)  # compiles, fills the cache
  assert whole.returncode == 0, whole.stderr[-3000:]
  chunks = [p for p in _files(cache) if p.name.startswith("jit_run_chunk")]
  assert len(chunks) == 1, _files(cache)
  # The traced programs (init and chunk) and the state's shapes, beside the compiled code.
  programs = [p for p in _files(cache) if p.parent.name == "programs"]
  assert sorted(p.suffix for p in programs) == [".shapes"] + [".stablehlo"] * 2 + [".tree"] * 2
  stamps = [p.stat().st_mtime_ns for p in programs]
  paused = _train(*RESUME, "--out", tmp_path / "paused", "--time-limit", "0", env=env)
  assert paused.returncode == 0 and "paused at 64 env steps" in paused.stdout, paused.stderr
  resumed = _train("--resume", tmp_path / "paused", "--no-progress", env=env)
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  # Both later sessions loaded the traced and compiled programs instead of making others.
  assert [p for p in _files(cache) if p.name.startswith("jit_run_chunk")] == chunks
  assert [p for p in _files(cache) if p.parent.name == "programs"] == programs
  assert [p.stat().st_mtime_ns for p in programs] == stamps
  assert _rows(tmp_path / "paused") == _rows(tmp_path / "whole")  # every metric, bit for bit
  # ... and those of a run that neither loads nor keeps anything.
  plain = _train(*RESUME, "--out", tmp_path / "plain", "--no-compile-cache", env=env)
  assert plain.returncode == 0, plain.stderr[-3000:]
  assert _rows(tmp_path / "plain") == _rows(tmp_path / "whole")
  summary = json.loads((tmp_path / "paused" / "summary.json").read_text())
  assert summary["status"] == "finished" and summary["sessions"] == 2
  assert summary["compile_cache"] == str(cache / compile_cache.host_key())
  estimate = summary["memory_estimate"]
  assert estimate["runs"] == 2 and estimate["need_bytes"] > 2 * estimate["state_per_run"] > 0
  assert estimate["compiled_chunk"]["total"] > 0


@pytest.mark.slow
def test_bench_startup_times_launches_with_a_fresh_cache(tmp_path):
  out = tmp_path / "startup.json"
  proc = subprocess.run(
    [sys.executable, "experiments/bench_startup.py", "--json", str(out), "--", *PPO[:-1]],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=900,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  lines = proc.stdout.splitlines()
  assert lines[0].startswith("launch 1: first training iteration after ") and lines[1].startswith(
    "launch 2: "
  ), proc.stdout
  launches = json.loads(out.read_text())["launches"]
  assert len(launches) == 2 and all(r["first_iteration_s"] > r["compile_s"] > 0 for r in launches)
  # The second launch loaded the training program the first compiled.
  assert launches[1]["compile_s"] < launches[0]["compile_s"]
  assert not Path(json.loads(out.read_text())["cache"]).exists()  # temporary, removed


def test_a_launch_says_how_long_its_compile_took_last_time(tmp_path):
  from mgjax.config import Config

  saved = compile_cache.settings()
  try:
    compile_cache.enable(False)
    key = compile_cache.run_key(Config(), 2, 1)
    assert "no compile cache" in compile_cache.compiling_note(key)
    compile_cache.record_compile(key, 12.0)  # nowhere to keep it
    compile_cache.enable(environ={"MGJAX_COMPILE_CACHE": str(tmp_path)})
    assert "first launch of these settings" in compile_cache.compiling_note(key)
    compile_cache.record_compile(key, 42.4)
    assert compile_cache.compiling_note(key).endswith("(it took 42 s last time) ...")
    assert compile_cache.last_compile(key)["seconds"] == 42.4
    # Other settings (more runs, another field) are other launches.
    for other in (
      compile_cache.run_key(Config(), 4, 1),
      compile_cache.run_key(Config(tau=0.01), 2, 1),
    ):
      assert other != key and compile_cache.last_compile(other) is None
    # Another version of mgjax or JAX compiles afresh: the note says so.
    times = next(tmp_path.rglob(compile_cache.TIMES_FILE))
    times.write_text(times.read_text().replace(compile_cache._code_version(), "older"))
    assert "changed since" in compile_cache.compiling_note(key)
    times.write_text("not json")  # a torn file is no record
    assert "first launch" in compile_cache.compiling_note(key)
  finally:
    compile_cache.restore(saved)
