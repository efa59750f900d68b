"""What the parts of a run's configuration share: `ConfigError`, `fail`, the checks of one
field, and `Part`, the base of the frozen per-part configs.

A part is a frozen dataclass of the settings one piece of code reads, defined beside that
code (`mgjax.config.RunConfig`, `mgjax.agents.ppo.PPOConfig`, ...). Its `check()` raises
ConfigError naming the first bad field and its value; `mgjax.config.Config` is every part in
one record, and an algorithm checks only the parts it reads (`mgjax.algorithms.Spec.parts`).
This module imports nothing of mgjax's, so that any module can define a part.
"""

import dataclasses
from typing import Any, ClassVar, Iterable, TypeVar

P = TypeVar("P", bound="Part")


class ConfigError(ValueError):
  """A configuration value is invalid; the message names the field and the value."""


def fail(field: str, value: Any, why: str) -> None:
  """Raises ConfigError "field=value: why"."""
  raise ConfigError(f"{field}={value!r}: {why}")


def positive(c: Any, names: Iterable[str]) -> None:
  """Each named field of `c` is > 0."""
  for name in names:
    if not getattr(c, name) > 0:
      fail(name, getattr(c, name), "must be positive")


def non_negative(c: Any, names: Iterable[str]) -> None:
  """Each named field of `c` is >= 0."""
  for name in names:
    if getattr(c, name) < 0:
      fail(name, getattr(c, name), "must be non-negative")


def unit_interval(c: Any, names: Iterable[str]) -> None:
  """Each named field of `c` lies in [0, 1]."""
  for name in names:
    if not 0.0 <= getattr(c, name) <= 1.0:
      fail(name, getattr(c, name), "must lie in [0, 1]")


def layer_sizes(c: Any, names: Iterable[str]) -> None:
  """Each named field of `c` is one or more positive layer sizes."""
  for name in names:
    if not getattr(c, name) or any(h <= 0 for h in getattr(c, name)):
      fail(name, getattr(c, name), "must be one or more positive layer sizes")


def one_of(c: Any, name: str, choices: Iterable[str]) -> None:
  """Field `name` of `c` is one of `choices`."""
  choices = tuple(choices)
  if getattr(c, name) not in choices:
    fail(name, getattr(c, name), f"choose one of {', '.join(choices)}")


class Part:
  """The base of a part's frozen dataclass.

  SECTION names the part in `--help`; `check()` raises ConfigError for a bad field of the
  part (a subclass adds its own checks); `of(config)` is the part of a `Config`, or of any
  object with its fields; `changed()` the fields that differ from the part's defaults."""

  SECTION: ClassVar[str] = ""

  def check(self) -> None:
    """No checks (a part adds its own)."""

  @classmethod
  def of(cls: type[P], config: Any) -> P:
    """The part's fields of `config` as this part."""
    return cls(**{f.name: getattr(config, f.name) for f in dataclasses.fields(cls)})

  def changed(self) -> dict[str, Any]:
    """{field: value} where the part differs from its class's defaults."""
    return {
      f.name: getattr(self, f.name)
      for f in dataclasses.fields(self)
      if getattr(self, f.name) != f.default
    }
