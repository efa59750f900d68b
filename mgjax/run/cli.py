"""Command-line pieces the `mgjax` commands and the experiment scripts share: an argparse
parser that reports bad input in one line, every `mgjax.Config` field as a flag (its help
from the field's comment in its part's source, with its choices), and typed `--set
FIELD=VALUE` overrides."""

import argparse
import dataclasses
import inspect
import re
import typing

from mgjax.config import ALIASES, PARTS, Config, ConfigError


class Parser(argparse.ArgumentParser):
  """argparse that reports bad input in one line, exit status 2 (`error`, also for the
  script's own checks); the description (the script's docstring) keeps its layout. A flag
  must be given whole: an abbreviation (`--see` for `--seeds`) is unknown."""

  def __init__(self, *args, **kwargs):
    kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
    kwargs.setdefault("allow_abbrev", False)
    super().__init__(*args, **kwargs)

  def error(self, message):
    self.exit(2, f"{self.prog}: error: {message}\n")


def add_import_flag(p: argparse.ArgumentParser) -> None:
  """--import MODULE (repeatable): code that registers algorithms or envs of its own."""
  p.add_argument(
    "--import",
    dest="imports",
    action="append",
    default=[],
    metavar="MODULE",
    help="import MODULE first (a module name importable from the current folder, or a .py "
    "file; repeatable), so that the algorithms and envs it registers (mgjax.register, "
    "mgjax.register_env) can be named",
  )


def import_modules(p: argparse.ArgumentParser, argv: list[str]) -> None:
  """Imports the --import modules of `argv` before the flags are built (so that `--algo`
  offers what they register); a module that cannot be imported is one line, exit 2."""
  import importlib
  import importlib.util
  import os
  import sys

  pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
  add_import_flag(pre)
  names = pre.parse_known_args(argv)[0].imports
  if names and os.getcwd() not in sys.path:
    sys.path.insert(0, os.getcwd())  # as `python -m` does
  for name in names:
    try:
      if name.endswith(".py"):
        spec = importlib.util.spec_from_file_location(os.path.basename(name)[:-3], name)
        if spec is None or not os.path.isfile(name):
          raise ImportError(f"no file {name}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
      else:
        importlib.import_module(name)
    except Exception as e:  # any failure of the user's module is one line
      p.error(f"import={name!r}: {type(e).__name__}: {e}")


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


def _field_comments(source: str | None = None) -> dict[str, str]:
  """The comment of each Config field in its part's source (`mgjax.config.PARTS`; or in
  `source`, a class body in that layout), for --help: the `# ...` after the field, and every
  comment line that follows it directly (at any indent), up to the next field, blank line or
  section heading (`# -- ...`). A field of two parts takes the first part's comment."""
  if source is None:
    out = {}
    for part in PARTS:
      out = {**_field_comments(inspect.getsource(part)), **out}
    return out
  out, last = {}, None
  for line in source.splitlines():
    text = line.strip()
    if text.startswith("#"):
      if text.startswith("# --"):  # a section heading, and what continues it
        last = None
      elif last is not None:
        out[last] = f"{out[last]} {text[1:].strip()}".strip()
      continue
    match = _FIELD.match(text)
    last = match and match["name"]
    if last:
      out[last] = (match["comment"] or "").strip()
  return {name: doc for name, doc in out.items() if doc}


def field_sections() -> dict[str, str]:
  """The section of each Config field in --help: the SECTION of the first part that has it
  (`mgjax.config.PARTS`: "run", "PPO", ...)."""
  out = {}
  for part in PARTS:
    for f in dataclasses.fields(part):
      out.setdefault(f.name, part.SECTION)
  return out


# A field line of the dataclass: `name: type = default  # comment` (comment optional).
_FIELD = re.compile(r"(?P<name>[A-Za-z_]\w*)\s*:[^#]*?(?:#(?P<comment>.*))?$")


def field_choices() -> dict[str, tuple[str, ...]]:
  """The values a Config field of a fixed set accepts: `algo` (the registered algorithms),
  `backend` (brax's), and each text field whose check names its choices ("choose one of
  a, b": a config part's check, or an algorithm's own). `env` takes any brax env
  name and is not among them."""
  from mgjax import envs
  from mgjax.algorithms import REGISTRY, validate

  out = {"algo": tuple(REGISTRY), "backend": tuple(envs.BACKENDS)}
  hints = typing.get_type_hints(Config)
  for f in dataclasses.fields(Config):
    if hints[f.name] is not str or f.name in out or f.name == "env":
      continue
    for algo in REGISTRY:  # an algorithm checks the fields it reads
      try:
        validate(Config(algo=algo, **{f.name: "\0"}))
      except ConfigError as e:
        _, sep, names = str(e).partition("choose one of ")
        if sep and str(e).startswith(f"{f.name}="):
          out[f.name] = tuple(n.strip() for n in names.split(","))
          break
  return out


def _help(doc: str, default, choices: tuple[str, ...] | None) -> str:
  """A Config flag's help: its comment, the choices that the comment does not name, and the
  default."""
  named = set(re.findall(r"[\w-]+", doc))
  listed = f"one of {' | '.join(choices)}; " if choices and not set(choices) <= named else ""
  text = f"{doc} ({listed}default {default})" if doc else f"{listed}default {default}"
  return text.replace("%", "%%")


def _flags(field: str) -> list[str]:
  """The field's flag, then those of its names in earlier versions (`mgjax.config.ALIASES`)."""
  names = [field] + [old for old, new in ALIASES.items() if new == field]
  return ["--" + n.replace("_", "-") for n in names]


def add_config_flags(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
  """Every Config field as a flag (`--mg-horizon 5`; earlier names, as --rollout-schedule,
  too), grouped in --help by its part of the config (`field_sections`), with its
  default None, so that an unset flag takes the algorithm's per-env preset,
  then Config's default; `--algo` chooses among the registered algorithms. Returns `p`."""
  from mgjax.algorithms import REGISTRY

  hints = typing.get_type_hints(Config)
  docs, choices, sections = _field_comments(), field_choices(), field_sections()
  groups = {}
  for f in dataclasses.fields(Config):
    kind = hints[f.name]
    conv = _tuple_of_ints if typing.get_origin(kind) is tuple else kind
    default = ",".join(map(str, f.default)) if isinstance(f.default, tuple) else f.default
    section = sections.get(f.name, "run")
    if section not in groups:
      groups[section] = p.add_argument_group(f"settings: {section}")
    groups[section].add_argument(
      *_flags(f.name),
      dest=f.name,
      type=conv,
      default=None,
      choices=list(REGISTRY) if f.name == "algo" else None,
      help=_help(docs.get(f.name, ""), default, choices.get(f.name)),
    )
  return p


def config_fields(args: argparse.Namespace) -> dict:
  """The Config fields given on the command line (`add_config_flags`'s flags that are set)."""
  return {
    f.name: getattr(args, f.name)
    for f in dataclasses.fields(Config)
    if getattr(args, f.name) is not None
  }
