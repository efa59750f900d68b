"""Tests for mgjax.config (Config, its old field names) and the validation of
mgjax.algorithms (make_config, validate, config_from_dict): a ConfigError names the field and
its value."""

import dataclasses
import json
import re

import pytest
import tiny
from paths import ROOT

from mgjax.algorithms import config_from_dict, describe, get_algorithm, make_config, validate
from mgjax.config import (
  ALIASES,
  PARTS,
  Config,
  ConfigError,
  MBPOConfig,
  MGConfig,
  ModelConfig,
  PPOConfig,
  RunConfig,
  SACConfig,
)

# The configs of tests/algorithms/test_mg.py: a tiny mg run, its stage variant and the
# end-to-end runs.
SMALL = Config(algo="mg", **tiny.PPO_FAMILY)
STAGE = Config(algo="mg", **tiny.STAGE)
E2E = tiny.E2E


# ------------------------------------------------------------------------------ validate
def test_validate_accepts_defaults_and_the_test_configs():
  for config in (Config(), SMALL, STAGE, *(Config(algo=a, **E2E) for a in ("mle", "ppo"))):
    assert validate(config) is config


@pytest.mark.parametrize(
  "changes, expected",
  [
    (dict(algo="foo"), "algo='foo'"),
    (dict(env="nope"), "env='nope'"),
    (dict(total_steps=0), "total_steps=0"),
    (dict(num_envs=-1), "num_envs=-1"),
    # ppo minibatches split num_envs × rollout_length = 3 × 5 = 15 rows: 4 does not divide it.
    (
      dict(algo="ppo", num_envs=3, rollout_length=5, num_minibatches=4),
      "num_minibatches=4: does not divide num_envs*rollout_length = 15",
    ),
    # mg/mle minibatches split model_rollouts × model_horizon = 512 × 10 = 5120 rows.
    (
      dict(algo="mle", num_minibatches=3),
      "num_minibatches=3: does not divide model_rollouts*model_horizon = 5120",
    ),
    # One iteration adds num_envs × rollout_length = 32 × 32 = 1024 rows to the buffer.
    (dict(buffer_size=1000), "buffer_size=1000: smaller than one iteration's batch"),
    (dict(mg_start="recent"), "mg_start='recent': choose one of buffer, batch"),
    (dict(real_grad_ema=1.0), "real_grad_ema=1.0: must lie in [0, 1)"),
    (dict(env_group=-8), "env_group=-8: must be non-negative"),
    (dict(env_group=5), "env_group=5: does not divide num_envs = 32"),
  ],
)
def test_validate_names_field_and_value(changes, expected):
  with pytest.raises(ConfigError, match=re.escape(expected)):
    validate(Config(**changes))


# ------------------------------------------------------------------------------ parts
def test_config_is_its_parts_and_nothing_else():
  names = [f.name for f in dataclasses.fields(Config)]
  from_parts = list(dict.fromkeys(f.name for part in PARTS for f in dataclasses.fields(part)))
  assert names == from_parts  # config.json's order: the parts' in PARTS order
  for part in PARTS:  # the same defaults in the part and in Config
    for f in dataclasses.fields(part):
      assert getattr(Config(), f.name) == f.default, (part.__name__, f.name)
  # Only discount is in two parts (PPO's and SAC's), with one value.
  shared = [
    n for n in dict.fromkeys(names) if sum(n in part.__dataclass_fields__ for part in PARTS) > 1
  ]
  assert shared == ["discount"]


def test_a_part_of_a_config_and_its_own_checks():
  c = make_config(algo="mbpo", env="hopper", sac_batch=64)
  sac = SACConfig.of(c)
  assert isinstance(sac, SACConfig) and (sac.sac_batch, sac.target_entropy) == (64, -1.0)
  assert MBPOConfig.of(c) == MBPOConfig.for_env("hopper")
  assert SACConfig.for_env("ant").changed() == {"target_entropy": -4.0}
  assert MBPOConfig.for_env("humanoid").changed() == {
    "branch_schedule": (20, 300, 1, 25),
    "model_retain_epochs": 5,
  }
  for part, field, value, why in (
    (PPOConfig, "clip_eps", 0.0, "must be positive"),
    (ModelConfig, "model_hidden", (), "must be one or more positive layer sizes"),
    (MGConfig, "estimator", "exact", "choose one of score, pathwise"),
    (SACConfig, "tau", 2.0, "must lie in [0, 1]"),
    (MBPOConfig, "elite_draw", "all", "choose one of row, block"),
    (RunConfig, "eval_every", 0, "must be positive"),
  ):
    part().check()
    with pytest.raises(ConfigError, match=re.escape(f"{field}={value!r}: {why}")):
      part(**{field: value}).check()


def test_an_algorithm_checks_only_the_parts_it_reads():
  # PPO's fields are not sac's: a bad one is no error for sac, and is for mg.
  sac = dict(algo="sac", env="pointmass", exploration_steps=0)
  assert make_config(**sac, ppo_epochs=0).ppo_epochs == 0
  with pytest.raises(ConfigError, match="ppo_epochs=0"):
    make_config(algo="mg", ppo_epochs=0)
  # SAC's and MBPO's fields are not mg's or ppo's.
  for algo in ("mg", "mle", "ppo"):
    make_config(algo=algo, tau=-1.0, elite_draw="all")
  assert SACConfig not in get_algorithm("mg").spec.parts
  # The model gradient's are mg-sac's but not mbpo's or sac's.
  with pytest.raises(ConfigError, match="estimator='exact'"):
    make_config(algo="mg-sac", estimator="exact")
  make_config(algo="mbpo", estimator="exact")
  # The run's fields are every algorithm's.
  for algo in ("mg", "mle", "ppo", "sac", "mbpo", "mg-sac"):
    with pytest.raises(ConfigError, match="num_eval_envs=0"):
      make_config(algo=algo, num_eval_envs=0)


def test_every_stored_config_json_still_loads():
  # Every config.json under results/, written by earlier versions, loads as a valid Config
  # with each of its fields as it was written. Envs registered from outside the package are
  # imported as their runs imported them (`train.py --import`).
  import importlib
  import sys

  sys.path.insert(0, str(ROOT / "experiments"))
  importlib.import_module("gymnasium_hopper")  # env hopper_gymnasium
  paths = sorted((ROOT / "results").rglob("config.json"))
  assert len(paths) >= 40
  for path in paths:
    d = json.loads(path.read_text())
    config = config_from_dict(d)
    written = {ALIASES.get(k, k): v for k, v in d.items() if k not in ("resolved", "seeds")}
    assert set(written) <= set(config.to_dict()), path
    for name, value in written.items():
      assert getattr(config, name) == (tuple(value) if isinstance(value, list) else value), path


# ------------------------------------------------------- rollout_schedule -> branch_schedule
def test_aliases_map_the_old_field_name():
  assert ALIASES == {"rollout_schedule": "branch_schedule"}
  assert "rollout_schedule" not in {f.name for f in dataclasses.fields(Config)}


def test_make_config_accepts_rollout_schedule_as_branch_schedule():
  old = make_config(algo="mbpo", env="hopper", rollout_schedule=(10, 50, 1, 5))
  new = make_config(algo="mbpo", env="hopper", branch_schedule=(10, 50, 1, 5))
  # The old name wins over the hopper preset's (20, 100, 1, 15), as the new name does.
  assert old.branch_schedule == (10, 50, 1, 5)
  assert old == new
  assert make_config(algo="mbpo", env="hopper").branch_schedule == (20, 100, 1, 15)
  # An invalid value under the old name is validated, and named by the new name.
  with pytest.raises(ConfigError, match=re.escape("branch_schedule=(20, 10, 1, 15)")):
    make_config(algo="mbpo", env="hopper", rollout_schedule=(20, 10, 1, 15))


def old_config_json(config: Config, schedule) -> dict:
  """config.json of an earlier version: tuples stored as lists, the branch schedule under its
  old name rollout_schedule."""
  d = {k: list(v) if isinstance(v, tuple) else v for k, v in describe(config).items()}
  del d["branch_schedule"]
  return {**d, "rollout_schedule": list(schedule)}


def test_config_from_dict_accepts_rollout_schedule_without_validating():
  mbpo = make_config(algo="mbpo", env="hopper")
  c = Config.from_dict(old_config_json(mbpo, (10, 50, 1, 5)))
  assert c.branch_schedule == (10, 50, 1, 5)
  assert c == dataclasses.replace(mbpo, branch_schedule=(10, 50, 1, 5))
  # Config.from_dict reads without checking: an invalid schedule or algorithm passes through.
  assert Config.from_dict(old_config_json(mbpo, (1, 2, 3))).branch_schedule == (1, 2, 3)
  assert Config.from_dict({"rollout_schedule": [1, 2, 3]}).branch_schedule == (1, 2, 3)
  assert Config.from_dict({"algo": "foo"}).algo == "foo"
  # The round trip of to_dict.
  assert Config.from_dict(SMALL.to_dict()) == SMALL
  assert Config.from_dict(mbpo.to_dict()) == mbpo


def test_config_from_dict_validates():
  # describe's dict (config.json) has "resolved" too, which is not a field.
  d = describe(STAGE)
  # 8 envs × 32 steps = 256 per iteration; 512 / (256 × 2) = 1 chunk of 2 iterations.
  assert d["resolved"] == {"batch_steps": 256, "num_iterations": 2, "env_steps": 512}
  assert config_from_dict(d) == STAGE
  mbpo = make_config(algo="mbpo", env="hopper")
  assert config_from_dict(old_config_json(mbpo, (10, 50, 1, 5))) == dataclasses.replace(
    mbpo, branch_schedule=(10, 50, 1, 5)
  )
  with pytest.raises(ConfigError, match=re.escape("algo='foo'")):
    config_from_dict({"algo": "foo"})
  with pytest.raises(ConfigError, match=re.escape("branch_schedule=(1, 2, 3)")):
    config_from_dict(old_config_json(mbpo, (1, 2, 3)))
  with pytest.raises(ConfigError, match=re.escape("branch_schedule=(20, 10, 1, 15)")):
    config_from_dict(old_config_json(mbpo, (20, 10, 1, 15)))
  # One iteration adds 32 × 32 = 1024 rows, more than buffer_size = 1000.
  with pytest.raises(ConfigError, match=re.escape("buffer_size=1000")):
    config_from_dict({**Config().to_dict(), "buffer_size": 1000})


def test_help_groups_the_settings_by_their_part_of_config():
  import argparse

  from mgjax.run import cli

  sections = cli.field_sections()
  assert set(sections) == {f.name for f in dataclasses.fields(Config)}
  assert (sections["algo"], sections["policy_hidden"], sections["clip_eps"]) == (
    "run",
    "PPO",
    "PPO",
  )
  assert (sections["mle_batch"], sections["model_updates"], sections["mg_horizon"]) == (
    "model fitting",
    "policy optimisation in the model",
    "model gradient",
  )
  assert (sections["sac_hidden"], sections["discount"], sections["elites"]) == (
    "SAC",
    "PPO",  # PPO's and SAC's: the first part that has it
    "mbpo, mg-sac",
  )
  text = cli.add_config_flags(argparse.ArgumentParser(prog="x")).format_help()
  headings = [line[: -len(":")] for line in text.splitlines() if line.startswith("settings: ")]
  assert headings == [f"settings: {s}" for s in dict.fromkeys(sections.values())]
  ppo = text[text.index("settings: PPO:") : text.index("settings: model fitting:")]
  assert "--clip-eps" in ppo and "--sac-hidden" not in ppo
