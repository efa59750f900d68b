"""Command-line pieces the experiment scripts share: typed `--set FIELD=VALUE` overrides of
`mgjax.Config`."""
import dataclasses

from mgjax.config import ALIASES, Config, ConfigError


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
