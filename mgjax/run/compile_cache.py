"""The persistent XLA compilation cache of the command lines (`mgjax train`, `mgjax
evaluate`, experiments/benchmark.py, device_check.py): a program compiled once is loaded from
disk by later launches instead of being compiled again (an MJX training program takes
10–140 s to compile on a CPU).

Where it lives, first match wins:
  1. `--no-compile-cache`, or `MGJAX_COMPILE_CACHE` = 0 / off / no / false: no cache;
  2. `MGJAX_COMPILE_CACHE` = a folder: FOLDER/HOST;
  3. `JAX_COMPILATION_CACHE_DIR` (JAX's own variable) = a folder: that folder, as it is;
  4. otherwise the user's cache folder: `$XDG_CACHE_HOME/mgjax/xla/HOST`, by default
     `~/.cache/mgjax/xla/HOST`.
HOST (`host_key`) names the CPU: XLA:CPU compiles for the CPU's own vector extensions, so a
home folder shared by machines of other CPUs keeps their programs apart (a program of an
AVX2 machine run on an AVX-512 one would give the AVX2 machine's numbers). JAX keys every
entry by the program, the jax and XLA versions, the backend and the compile options, so a
stale entry is never loaded; `rm -rf ~/.cache/mgjax/xla` clears the cache.

Beside the programs, FOLDER/compile_times.json keeps how long each run's settings took to
compile at their last launch (`record_compile`), so that a launch can say how long its
compile will take (`compiling_note`).

XLA cannot store a program that calls back to Python (a host callback): the runner's
chunk programs have none, so that they are cached (`mgjax.run.experiment`). Beside the
compiled code, `enable` keeps the runner's traced programs in FOLDER/programs/
(`mgjax.run.program_cache`), so that a later launch skips tracing too.
"""

import argparse
import dataclasses
import functools
import hashlib
import json
import os
import platform
from pathlib import Path
from typing import Any, Mapping, Sequence

import jax

ENV_VAR = "MGJAX_COMPILE_CACHE"
_programs: Path | None = None  # set by `enable`: where mgjax.run.program_cache keeps programs
OFF = ("0", "off", "no", "false")
SIMD_EXTENSIONS = ("avx512f", "avx2", "avx")  # widest first, as `mgjax.run.outputs.host`


class CacheError(ValueError):
  """The cache folder named by MGJAX_COMPILE_CACHE cannot be used; the message names it."""


def host_key(cpuinfo: str | None = None) -> str:
  """The cache's subfolder for this CPU: its widest vector extension and a short hash of all
  its feature flags (Linux's /proc/cpuinfo, or `cpuinfo`, text in its format), e.g.
  "avx512f-3fa2c1d0"; `platform.machine()` where the flags are not known."""
  if cpuinfo is None:
    try:
      cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
      cpuinfo = ""
  flags = ""
  for line in cpuinfo.splitlines():  # the first processor's (x86) or the "Features" (arm)
    key, _, value = line.partition(":")
    if key.strip() in ("flags", "Features"):
      flags = value.strip()
      break
  if not flags:
    return platform.machine() or "cpu"
  words = set(flags.split())
  simd = next((ext for ext in SIMD_EXTENSIONS if ext in words), platform.machine() or "cpu")
  digest = hashlib.sha256(" ".join(sorted(words)).encode()).hexdigest()[:8]
  return f"{simd}-{digest}"


def default_root(environ: Mapping[str, str] | None = None) -> Path:
  """$XDG_CACHE_HOME/mgjax/xla, by default ~/.cache/mgjax/xla."""
  environ = os.environ if environ is None else environ
  base = environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
  return Path(base).expanduser() / "mgjax" / "xla"


def cache_dir(enabled: bool = True, environ: Mapping[str, str] | None = None) -> Path | None:
  """The folder of the cache (None: no cache), by the rules in this module's docstring.
  `enabled=False` is `--no-compile-cache`."""
  environ = os.environ if environ is None else environ
  mine = environ.get(ENV_VAR, "").strip()
  if not enabled or mine.lower() in OFF:
    return None
  if mine:
    return Path(mine).expanduser() / host_key()
  if environ.get("JAX_COMPILATION_CACHE_DIR"):
    return Path(environ["JAX_COMPILATION_CACHE_DIR"]).expanduser()
  return default_root(environ) / host_key()


def enable(enabled: bool = True, environ: Mapping[str, str] | None = None) -> Path | None:
  """Points JAX's persistent compilation cache at `cache_dir` (or turns it off) and makes it
  store every program, however short its compile; returns the folder (None: off). Call it
  before the first compile.

  Thresholds set in the environment (JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS,
  JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES) are kept. CacheError if MGJAX_COMPILE_CACHE
  names a folder that cannot be created; the default folder that cannot be created
  turns the cache off (a run does not depend on it)."""
  global _programs
  environ = os.environ if environ is None else environ
  path = cache_dir(enabled, environ)
  _programs = None
  if path is not None:
    try:
      path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
      if environ.get(ENV_VAR, "").strip():
        raise CacheError(
          f"{ENV_VAR}={environ[ENV_VAR]!r}: cannot create {str(path)!r} "
          f"({e.strerror}); name another folder, or 0 for no cache"
        ) from None
      path = None
  if path is None:
    jax.config.update("jax_enable_compilation_cache", False)
    jax.config.update("jax_compilation_cache_dir", None)
    return None
  jax.config.update("jax_enable_compilation_cache", True)
  jax.config.update("jax_compilation_cache_dir", str(path))
  # JAX's defaults store only programs that took over 1 s to compile.
  if "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS" not in environ:
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  if "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES" not in environ:
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)  # no minimum
  _programs = path / "programs"
  return path


_JAX_SETTINGS = (
  "jax_enable_compilation_cache",
  "jax_compilation_cache_dir",
  "jax_persistent_cache_min_compile_time_secs",
  "jax_persistent_cache_min_entry_size_bytes",
)


def settings() -> dict:
  """What `enable` sets (JAX's cache settings and the programs' folder), for `restore`."""
  return {**{name: getattr(jax.config, name) for name in _JAX_SETTINGS}, "programs": _programs}


def restore(saved: dict) -> None:
  """Puts back the `settings()` taken before an `enable` (for code that enables the cache
  in a process it does not own, such as a test's)."""
  global _programs
  for name in _JAX_SETTINGS:
    jax.config.update(name, saved[name])
  _programs = saved["programs"]


def programs() -> Path | None:
  """The folder of the traced programs (`mgjax.run.program_cache`) beside the cache that
  `enable` set; None before `enable`, or with the cache off."""
  return _programs


def current() -> str | None:
  """The cache folder this process uses (None: none), for summary.json."""
  if not jax.config.jax_enable_compilation_cache:
    return None
  return jax.config.jax_compilation_cache_dir or None


def add_flag(parser: argparse.ArgumentParser) -> None:
  """The command lines' --no-compile-cache."""
  parser.add_argument(
    "--no-compile-cache",
    action="store_true",
    help=f"do not load or store compiled programs (default: in ~/.cache/mgjax/xla, or "
    f"${ENV_VAR}: a folder, or 0 for none; JAX_COMPILATION_CACHE_DIR is respected)",
  )


# ------------------------------------------------------------ how long compiling took
TIMES_FILE = "compile_times.json"


def run_key(config: Any, runs: int, devices: int, sweep: Sequence[str] = ()) -> str:
  """The key under which a run's compile time is kept (`record_compile`): its config, how
  many runs on how many devices, and the names of its sweep's fields."""
  fields = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config)
  text = json.dumps(
    {"config": fields, "runs": runs, "devices": devices, "sweep": sorted(sweep)},
    sort_keys=True,
    default=str,
  )
  return hashlib.sha256(text.encode()).hexdigest()[:24]


@functools.lru_cache(maxsize=1)
def source_digest() -> str:
  """sha256 of the mgjax package's .py files (paths and contents), read once a process."""
  root = Path(__file__).resolve().parent.parent
  h = hashlib.sha256()
  for path in sorted(root.rglob("*.py")):
    h.update(str(path.relative_to(root)).encode())
    h.update(path.read_bytes())
  return h.hexdigest()


def _code_version() -> str:
  """What changes a compiled program: mgjax's source and jax's version."""
  return f"{source_digest()[:16]}-jax{jax.__version__}"


def _times_path() -> Path | None:
  folder = current()
  return Path(folder) / TIMES_FILE if folder else None


def last_compile(key: str) -> dict | None:
  """What `record_compile` kept for `key` in this cache ({"seconds", "code"}); None with no
  cache or no record."""
  path = _times_path()
  try:
    return json.loads(path.read_text()).get(key) if path else None
  except (OSError, ValueError, AttributeError):
    return None


def record_compile(key: str, seconds: float) -> None:
  """Keeps how long the launch of `key` took to compile, beside the compiled programs (not
  kept with no cache, or a cache that cannot be written)."""
  path = _times_path()
  if path is None:
    return
  try:
    times = json.loads(path.read_text()) if path.exists() else {}
    if not isinstance(times, dict):
      times = {}
  except (OSError, ValueError):
    times = {}
  times[key] = {"seconds": round(float(seconds), 1), "code": _code_version()}
  try:
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(times, indent=1, sort_keys=True))
    os.replace(tmp, path)
  except OSError:
    pass


def compiling_note(key: str) -> str:
  """The line that says a launch is compiling, and how long it took last time, if this
  cache knows."""
  what = "compiling the training program"
  if current() is None:
    return f"{what} (no compile cache: every launch compiles; seconds to minutes) ..."
  last = last_compile(key)
  if not isinstance(last, dict) or "seconds" not in last:
    return (
      f"{what}: the first launch of these settings compiles for seconds to minutes (an MJX "
      "env on a CPU: minutes); later launches load it from the cache ..."
    )
  took = f"{float(last['seconds']):.0f} s"
  if last.get("code") != _code_version():
    return f"{what} (it took {took} last time; mgjax or JAX has changed since) ..."
  return f"{what} (it took {took} last time) ..."
