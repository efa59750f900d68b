"""Which test compiles which program, and for how long: a profile of the suite's XLA
compiles (RESULTS.md, "What the test suite spends its time on").

    python tests/compile_profile.py install          # a hook in the user's site-packages
    MGJAX_COMPILE_PROFILE=/tmp/compiles.jsonl python -m pytest -q
    python tests/compile_profile.py summary /tmp/compiles.jsonl
    python tests/compile_profile.py uninstall

The hook (`usercustomize`, which every Python process of the user imports at start, so the
command lines that the tests start are profiled too) does nothing unless
MGJAX_COMPILE_PROFILE names a file. Then it wraps the persistent compilation cache's
read and its compile-and-write in `jax._src.compiler` and appends one JSON line per event:
the test (PYTEST_CURRENT_TEST, which subprocesses inherit), the process, "miss" (compiled,
with the seconds it took) or "hit" (loaded, with the compile seconds it saved), the
program's name and the end of its cache key. Programs compiled with the cache turned off
are not seen. It relies on jax's private functions of jaxlib 0.10; a jax that has renamed
them is left alone.
"""

import collections
import json
import site
import sys
from pathlib import Path

HOOK = '''# mgjax tests/compile_profile.py: remove with `python tests/compile_profile.py uninstall`.
import os

if os.environ.get("MGJAX_COMPILE_PROFILE"):
  try:
    import json
    import time

    import jax._src.compiler as _c

    def _log(kind, name, key, seconds):
      with open(os.environ["MGJAX_COMPILE_PROFILE"], "a") as f:
        f.write(json.dumps({
          "test": os.environ.get("PYTEST_CURRENT_TEST", "?"), "pid": os.getpid(),
          "kind": kind, "name": name, "key": (key or "")[-16:], "s": seconds,
        }) + "\\n")

    _compile = _c._compile_and_write_cache
    _read = _c._cache_read

    def _compile_and_write_cache(backend, computation, devices, options, callbacks, name, key):
      t = time.monotonic()
      out = _compile(backend, computation, devices, options, callbacks, name, key)
      _log("miss", name, key, time.monotonic() - t)
      return out

    def _cache_read(name, key, *args):
      executable, seconds = _read(name, key, *args)
      if executable is not None:
        _log("hit", name, key, seconds)
      return executable, seconds

    _c._compile_and_write_cache, _c._cache_read = _compile_and_write_cache, _cache_read
  except (ImportError, AttributeError):
    pass
'''
MARK = "# mgjax tests/compile_profile.py"


def _path() -> Path:
  return Path(site.getusersitepackages()) / "usercustomize.py"


def install() -> str:
  path = _path()
  if path.exists() and not path.read_text().startswith(MARK):
    raise SystemExit(f"{path} exists and is not this hook: not replaced")
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(HOOK)
  return f"installed {path}"


def uninstall() -> str:
  path = _path()
  if path.exists() and path.read_text().startswith(MARK):
    path.unlink()
    return f"removed {path}"
  return "not installed"


def summary(log: str, top: int = 25) -> str:
  """Compile seconds of the misses per test file and per test, the largest programs, and
  the seconds the hits saved."""
  rows = [json.loads(line) for line in open(log)]
  misses = [r for r in rows if r["kind"] == "miss"]
  hits = [r for r in rows if r["kind"] == "hit"]
  per_file, per_test = collections.Counter(), collections.Counter()
  for r in misses:
    test = r["test"].rsplit(" ", 1)[0]  # without "(call)"
    per_test[test] += r["s"]
    per_file[test.split("::")[0]] += r["s"]
  lines = [
    f"compiled: {len(misses)} programs, {sum(r['s'] for r in misses):.0f} s "
    f"({sum(r['s'] for r in misses if r['s'] < 1):.0f} s in the "
    f"{sum(r['s'] < 1 for r in misses)} under 1 s); loaded: {len(hits)}, "
    f"{sum(r['s'] for r in hits):.0f} s of compiling saved",
    "",
    "per file (s):",
    *(f"  {s:7.1f}  {name}" for name, s in per_file.most_common()),
    "",
    f"per test, the {top} largest (s):",
    *(f"  {s:7.1f}  {name}" for name, s in per_test.most_common(top)),
    "",
    f"programs, the {top} largest (s):",
    *(
      f"  {r['s']:7.1f}  {r['name']}  {r['key'][:6]}  {r['test'].rsplit(' ', 1)[0]}"
      for r in sorted(misses, key=lambda r: -r["s"])[:top]
    ),
  ]
  return "\n".join(lines)


def main(argv: list[str]) -> int:
  if argv[:1] == ["install"] and len(argv) == 1:
    print(install())
  elif argv[:1] == ["uninstall"] and len(argv) == 1:
    print(uninstall())
  elif argv[:1] == ["summary"] and len(argv) == 2:
    print(summary(argv[1]))
  else:
    print("usage: compile_profile.py install | uninstall | summary LOG", file=sys.stderr)
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
