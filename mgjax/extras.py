"""The optional dependencies, and the extras of mgjax that install them (setup.cfg):

  pip install "mgjax[viz]"           # matplotlib, imageio-ffmpeg: plots, pictures, mp4 videos
  pip install "mgjax[tensorboard]"   # tensorboardX: training's TensorBoard logging

`import mgjax`, training and evaluating need neither: each optional module is imported where
it is used, through `require`, which raises MissingExtra, naming the pip command, where it is
not installed. Given the command's parser, `require` reports it as the commands report bad
input: one line, exit status 2 (`mgjax.run.cli.Parser`), before the command starts its work.
"""

import argparse
import importlib
from types import ModuleType

# Each optional module: (the package that provides it, the extra of mgjax that installs it).
MODULES = {
  "matplotlib": ("matplotlib", "viz"),
  "imageio_ffmpeg": ("imageio-ffmpeg", "viz"),
  "tensorboardX": ("tensorboardX", "tensorboard"),
}


class MissingExtra(ImportError):
  """An optional module is not installed: the message says what needs it and the pip
  command of the extra that installs it."""


def require(module: str, what: str, parser: argparse.ArgumentParser | None = None) -> ModuleType:
  """`module` (one of MODULES), imported. Where it cannot be: MissingExtra('WHAT needs
  PACKAGE: pip install "mgjax[EXTRA]"'), or with `parser` that message as the parser's error
  (one line, exit status 2)."""
  package, extra = MODULES[module]
  try:
    return importlib.import_module(module)
  except ImportError as e:
    missing = MissingExtra(f'{what} needs {package}: pip install "mgjax[{extra}]"', name=module)
    if parser is None:
      raise missing from e
  # One line, exit status 2, as `mgjax.run.cli.Parser.error` (also for a plain argparse parser).
  parser.exit(2, f"{parser.prog}: error: {missing}\n")


def pyplot(what: str = "plotting") -> ModuleType:
  """matplotlib.pyplot, drawing to files (the Agg backend); MissingExtra without matplotlib."""
  require("matplotlib", what).use("Agg")
  import matplotlib.pyplot as plt

  return plt
