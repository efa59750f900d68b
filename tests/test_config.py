"""Tests for mgjax.config (Config, its old field names) and the validation of
mgjax.algorithms (make_config, validate, config_from_dict): a ConfigError names the field and
its value."""

import dataclasses
import re

import pytest

from mgjax.algorithms import config_from_dict, describe, make_config, validate
from mgjax.config import ALIASES, Config, ConfigError

# The configs of tests/test_mg.py: a tiny mg run, its stage variant and the end-to-end runs.
SMALL = Config(
  algo="mg",
  env="pointmass",
  total_steps=3 * 4 * 8 * 2,
  num_envs=4,
  rollout_length=8,
  eval_every=2,
  num_eval_envs=2,
  policy_hidden=(16,),
  value_hidden=(16,),
  model_hidden=(16,),
  ppo_epochs=1,
  num_minibatches=2,
  buffer_size=128,
  mle_steps=2,
  mle_batch=16,
  mg_steps=1,
  mg_rollouts=8,
  mg_horizon=3,
  model_rollouts=8,
  model_horizon=3,
  model_updates=1,
)
STAGE = dataclasses.replace(
  SMALL,
  num_envs=8,
  rollout_length=32,
  total_steps=8 * 32 * 2,
  episode_length=10,
  buffer_size=256,
  mle_steps=300,
  mle_batch=64,
  model_hidden=(32, 32),
)
E2E = dict(
  env="pointmass",
  total_steps=20000,
  num_envs=16,
  rollout_length=32,
  eval_every=5,
  num_eval_envs=8,
  model_hidden=(64, 64),
  mle_steps=20,
  mg_steps=2,
  mg_rollouts=64,
  model_rollouts=128,
  model_updates=2,
)


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


def test_help_groups_the_settings_by_their_section_of_config():
  import argparse

  from mgjax.run import cli

  sections = cli.field_sections()
  assert set(sections) == {f.name for f in dataclasses.fields(Config)}
  assert (sections["algo"], sections["policy_hidden"], sections["clip_eps"]) == (
    "run",
    "networks",
    "PPO",
  )
  assert (sections["mg_horizon"], sections["model_updates"], sections["sac_hidden"]) == (
    "model fitting",
    "policy optimisation in the model",
    "mbpo, mg-sac",
  )
  text = cli.add_config_flags(argparse.ArgumentParser(prog="x")).format_help()
  headings = [line[: -len(":")] for line in text.splitlines() if line.startswith("settings: ")]
  assert headings == [f"settings: {s}" for s in dict.fromkeys(sections.values())]
  ppo = text[text.index("settings: PPO:") : text.index("settings: model fitting:")]
  assert "--clip-eps" in ppo and "--sac-hidden" not in ppo
