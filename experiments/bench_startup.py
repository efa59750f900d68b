"""How long `experiments/train.py` takes to start training, launched twice with a fresh
compilation cache: the first launch compiles its programs and stores them, the second
loads them (`mgjax.run.compile_cache`).

  python experiments/bench_startup.py                         # the default run: mg on hopper
  python experiments/bench_startup.py -- --env pointmass      # train.py's flags after --

A launch is timed from its start to its first training iteration, which begins when
train.py prints "compiled in ..." (everything before it: importing, building the env,
compiling or loading the programs, initialising the state), and is then stopped. The cache
and the launches' output folders are temporary and removed afterwards, unless --cache
names a folder to keep. Takes minutes of every core for the default run; run nothing else
meanwhile.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TRAIN = ROOT / "experiments" / "train.py"
STARTED = re.compile(r"^compiled in ([0-9.]+)s")


def launch(train_args: list[str], cache: Path, out: Path, timeout: float) -> dict:
  """One launch of train.py with `cache` as its compilation cache, stopped at its first
  training iteration -> {"first_iteration_s", "compile_s"} (or {"error": ...})."""
  env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
  env.update(MGJAX_COMPILE_CACHE=str(cache), PYTHONUNBUFFERED="1")
  env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
  cmd = [sys.executable, str(TRAIN), *train_args, "--out", str(out), "--no-progress"]
  start = time.perf_counter()
  proc = subprocess.Popen(
    cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT
  )
  result = {"error": "train.py ended before its first iteration"}
  try:
    for line in proc.stdout:
      found = STARTED.match(line)
      if found:
        result = {
          "first_iteration_s": time.perf_counter() - start,
          "compile_s": float(found.group(1)),
        }
        break
      if time.perf_counter() - start > timeout:
        result = {"error": f"no first iteration within {timeout:.0f}s"}
        break
  finally:
    proc.terminate()
    try:
      _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
      proc.kill()
      _, err = proc.communicate()
  if "error" in result and err.strip():
    result["error"] += ": " + err.strip().splitlines()[-1]
  return result


def cache_size(cache: Path) -> tuple[int, int]:
  """(entries, bytes) of a cache folder."""
  files = [p for p in cache.rglob("*") if p.is_file()]
  return len(files), sum(p.stat().st_size for p in files)


def main(argv=None) -> int:
  argv = sys.argv[1:] if argv is None else list(argv)
  train_args = argv[argv.index("--") + 1 :] if "--" in argv else []
  own = argv[: argv.index("--")] if "--" in argv else argv
  from mgjax.run.cli import Parser

  p = Parser(description=__doc__)
  p.add_argument("--launches", type=int, default=2, help="launches in a row (default 2)")
  p.add_argument(
    "--cache",
    default=None,
    help="the cache folder, kept afterwards (default: a fresh temporary one); "
    "it must be empty or absent",
  )
  p.add_argument(
    "--timeout",
    type=float,
    default=1800.0,
    help="seconds a launch may take to start training (default 1800)",
  )
  p.add_argument("--json", default=None, metavar="FILE", help="also write the times here")
  args = p.parse_args(own)
  if args.launches < 1:
    p.error(f"launches={args.launches}: must be positive")
  blocked = {"--out", "--resume", "--no-compile-cache", "--dry-run"} & set(train_args)
  if blocked:
    p.error(f"{sorted(blocked)[0]}: not a flag to time (each launch gets its own --out)")
  work = Path(tempfile.mkdtemp(prefix="mgjax-startup-"))
  cache = Path(args.cache) if args.cache else work / "cache"
  if cache.exists() and any(cache.iterdir()):
    p.error(f"cache={args.cache!r}: not empty; the first launch must find no programs")
  try:
    results = []
    for i in range(args.launches):
      r = launch(train_args, cache, work / f"run{i}", args.timeout)
      results.append(r)
      if "error" in r:
        print(f"launch {i + 1}: {r['error']}", file=sys.stderr)
        return 1
      entries, size = cache_size(cache)
      print(
        f"launch {i + 1}: first training iteration after {r['first_iteration_s']:.1f} s "
        f"(compiling or loading the training program: {r['compile_s']:.1f} s); "
        f"cache: {entries} files, {size / 2**20:.0f} MiB",
        flush=True,
      )
    if args.launches > 1:
      first, last = results[0]["first_iteration_s"], results[-1]["first_iteration_s"]
      print(
        f"startup with the cache filled: {last:.1f} s against {first:.1f} s "
        f"({first / last:.1f}x faster)"
      )
    if args.json:
      Path(args.json).write_text(
        json.dumps({"train_args": train_args, "launches": results, "cache": str(cache)}, indent=1)
        + "\n"
      )
  finally:
    shutil.rmtree(work, ignore_errors=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
