"""An experiments/ script's `main(argv)` run in the test's own process, answered as the
`subprocess.CompletedProcess` that running the script would give: for bad input, which a
script rejects before anything compiles, without starting Python and JAX again (about 3 s a
case). Each script's way out of a real process (`sys.exit(main())`) stays covered by its
command-line tests, which run it as a subprocess."""

import contextlib
import functools
import importlib.util
import io
import os
import subprocess
import sys
from pathlib import Path

import jax

from mgjax.run import compile_cache


@functools.cache
def _script(path: str):
  spec = importlib.util.spec_from_file_location(f"_script_{Path(path).stem}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def run_main(path, *args) -> subprocess.CompletedProcess:
  """`python path *args`, in this process: its exit status, stdout and stderr. What a script
  sets up before it rejects its input (the compilation cache's settings, the environment,
  sys.argv, the matmul precision) is put back."""
  jax.devices()  # started: a script's split of the CPU (`placement.split_cpu`) changes nothing
  argv = [str(a) for a in args]
  module = _script(str(path))
  out, err = io.StringIO(), io.StringIO()
  cache, environ, sys_argv = compile_cache.settings(), dict(os.environ), sys.argv
  precision = jax.config.jax_default_matmul_precision
  sys.argv = [str(path), *argv]  # argparse names the script as the real process would
  try:
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
      try:
        code = module.main(argv)
      except SystemExit as e:
        if isinstance(e.code, str):  # sys.exit("message"): printed, exit status 1
          print(e.code, file=sys.stderr)
        code = e.code if isinstance(e.code, int) else int(e.code is not None)
  finally:
    compile_cache.restore(cache)
    os.environ.clear()
    os.environ.update(environ)
    sys.argv = sys_argv
    jax.config.update("jax_default_matmul_precision", precision)
  return subprocess.CompletedProcess([str(path), *argv], code or 0, out.getvalue(), err.getvalue())
