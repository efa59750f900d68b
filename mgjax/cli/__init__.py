"""The `mgjax` command line, installed with the package:

  mgjax train --env pointmass --total-steps 20480    # trains, then prints its next commands
  mgjax evaluate RUN_DIR --video episode.mp4          # the saved policy's return, a video
  mgjax plot RUN_DIR                                  # learning curves and tables

`python -m mgjax ...` is the same. `mgjax COMMAND --help` describes each command. The
scripts experiments/train.py, evaluate.py and plot.py of a source checkout run the same
code (`mgjax.cli.train`, `evaluate`, `plot`). Importing this package imports nothing
heavy: a command loads JAX only once it runs.
"""

import difflib
import importlib
import sys

# Each command and what it does (the first line of `mgjax --help`'s list).
COMMANDS = {
  "train": "train an algorithm on an environment (seeds vmapped); writes a run folder",
  "evaluate": "play a run's saved policy again; render an episode to a video or a 3D page",
  "plot": "learning curves and tables from run folders or a benchmark suite",
}


def command(name: str, launcher: str | None) -> str:
  """How a user runs command `name`: `LAUNCHER NAME` (`mgjax train`, `python -m mgjax
  train`), or with no launcher the source checkout's script (`python experiments/train.py`)."""
  return f"python experiments/{name}.py" if launcher is None else f"{launcher} {name}"


def describe(doc: str, launcher: str | None) -> str:
  """A command's --help description: its docstring, each `mgjax NAME` in it written as the
  user runs NAME (`command`)."""
  for name in COMMANDS:
    doc = doc.replace(f"mgjax {name}", command(name, launcher))
  return doc


def _usage(launcher: str) -> str:
  from mgjax import __version__

  width = max(map(len, COMMANDS))
  lines = [f"usage: {launcher} {{{','.join(COMMANDS)}}} ...", ""]
  lines += [f"Model Gradient model-based reinforcement learning in JAX (mgjax {__version__}).", ""]
  lines += ["commands:"] + [f"  {name:<{width}}  {about}" for name, about in COMMANDS.items()]
  lines += ["", "example:", f"  {launcher} train --env pointmass --total-steps 20480"]
  lines += ["", f"'{launcher} COMMAND --help' lists a command's flags."]
  return "\n".join(lines)


def main(argv=None, launcher: str = "mgjax") -> int:
  """`mgjax COMMAND ARGS...`: runs the command's `main(ARGS)`; exit status 2 and one line
  for an unknown command."""
  argv = list(sys.argv[1:] if argv is None else argv)
  if not argv or argv[0] in ("-h", "--help"):
    print(_usage(launcher), file=sys.stdout if argv else sys.stderr)
    return 0 if argv else 2
  if argv[0] == "--version":
    from mgjax import __version__

    print(f"mgjax {__version__}")
    return 0
  name = argv[0]
  if name not in COMMANDS:
    close = difflib.get_close_matches(name, COMMANDS, n=1)
    hint = f"did you mean {close[0]}? " if close else ""
    print(
      f"{launcher}: error: command={name!r}: unknown; {hint}choose one of {', '.join(COMMANDS)}",
      file=sys.stderr,
    )
    return 2
  module = importlib.import_module(f"mgjax.cli.{name}")
  return module.main(argv[1:], launcher=launcher)


def console() -> None:
  """The `mgjax` console script."""
  sys.exit(main())
