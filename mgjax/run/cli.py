"""Command-line pieces the experiment scripts share: an argparse parser that reports bad
input in one line, every `mgjax.Config` field as a flag, and typed `--set FIELD=VALUE`
overrides."""

import argparse
import dataclasses
import inspect
import typing

from mgjax.config import ALIASES, Config, ConfigError


class Parser(argparse.ArgumentParser):
  """argparse that reports bad input in one line, exit status 2 (`error`, also for the
  script's own checks); the description (the script's docstring) keeps its layout."""

  def __init__(self, *args, **kwargs):
    kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
    super().__init__(*args, **kwargs)

  def error(self, message):
    self.exit(2, f"{self.prog}: error: {message}\n")


def parse_set(items: list[str]) -> dict:
  """--set field=value pairs, typed like the Config field (earlier field names, as
  rollout_schedule, under their current ones); ConfigError names a bad one."""
  types = {f.name: type(f.default) for f in dataclasses.fields(Config)}
  out = {}
  for item in items:
    name, _, text = item.partition("=")
    name = ALIASES.get(name, name)
    if name not in types:
      raise ConfigError(f"set={item!r}: unknown Config field {name!r}")
    kind = types[name]
    try:
      out[name] = tuple(int(x) for x in text.split(",")) if kind is tuple else kind(text)
    except ValueError:
      raise ConfigError(f"{name}={text!r}: not a valid {kind.__name__}") from None
  return out


def _tuple_of_ints(text: str) -> tuple[int, ...]:
  try:
    return tuple(int(x) for x in text.split(",") if x.strip())
  except ValueError:
    raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")


def _field_comments() -> dict[str, str]:
  """The `# comment` after each Config field in mgjax/config.py (with the comment lines
  indented past the field that continue it), for --help."""
  out, last, indent = {}, None, 0
  for line in inspect.getsource(Config).splitlines():
    if line.strip().startswith("#"):  # a continuation, or a section heading
      if last is not None and line.index("#") > indent:
        out[last] += " " + line.strip()[1:].strip()
      continue
    name, _, rest = line.strip().partition(":")
    last = None
    if "#" in rest and name.isidentifier():
      out[name] = rest.split("#", 1)[1].strip()
      last, indent = name, len(line) - len(line.lstrip())
  return out


def _flags(field: str) -> list[str]:
  """The field's flag, then those of its names in earlier versions (`mgjax.config.ALIASES`)."""
  names = [field] + [old for old, new in ALIASES.items() if new == field]
  return ["--" + n.replace("_", "-") for n in names]


def add_config_flags(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
  """Every Config field as a flag (`--mg-horizon 5`; earlier names, as --rollout-schedule,
  too) with its default None, so that an unset flag takes the algorithm's per-env preset,
  then Config's default; `--algo` chooses among the registered algorithms. Returns `p`."""
  from mgjax.algorithms import REGISTRY

  hints = typing.get_type_hints(Config)
  docs = _field_comments()
  for f in dataclasses.fields(Config):
    kind = hints[f.name]
    conv = _tuple_of_ints if typing.get_origin(kind) is tuple else kind
    default = ",".join(map(str, f.default)) if isinstance(f.default, tuple) else f.default
    choices = list(REGISTRY) if f.name == "algo" else None
    p.add_argument(
      *_flags(f.name),
      dest=f.name,
      type=conv,
      default=None,
      choices=choices,
      help=f"{docs.get(f.name, '')} (default {default})".replace("%", "%%"),
    )
  return p


def config_fields(args: argparse.Namespace) -> dict:
  """The Config fields given on the command line (`add_config_flags`'s flags that are set)."""
  return {
    f.name: getattr(args, f.name)
    for f in dataclasses.fields(Config)
    if getattr(args, f.name) is not None
  }
