"""What a finished run folder of train.py holds: config.json, metrics.csv, summary.json and a
restorable checkpoint/ (`check_outputs`), and the readers it uses. Shared by
tests/cli/test_cli.py and tests/experiments/test_benchmark.py."""

import csv
import dataclasses
import json
import math
import typing
from pathlib import Path

import pytest

from mgjax.run import outputs

REQUIRED_COLUMNS = (
  "algo",
  "env",
  "seed",
  "iteration",
  "env_steps",
  "eval_return",
  "model_grad_cosine",
  "model_nll",
  "wall_time_s",
)
MODEL_COLUMNS = ("model_grad_cosine", "model_nll", "mle_loss", "mg_loss")
MBPO_COLUMNS = ("critic_loss", "actor_loss", "alpha", "q_mean", "model_epochs", "branch_length")
SAC_ALGOS = ("mbpo", "mg-sac")


def read_metrics(out: Path) -> tuple[list[str], list[dict[str, str]]]:
  with open(out / "metrics.csv", newline="") as f:
    reader = csv.DictReader(f)
    return list(reader.fieldnames or []), list(reader)


def load_config(out: Path):
  """The Config that config.json describes (every field present, tuples restored)."""
  from mgjax.config import Config

  data = json.loads((out / "config.json").read_text())
  hints = typing.get_type_hints(Config)
  fields = {}
  for f in dataclasses.fields(Config):
    assert f.name in data, f"config.json lacks {f.name}"
    value = data[f.name]
    fields[f.name] = tuple(value) if typing.get_origin(hints[f.name]) is tuple else value
  return Config(**fields), data


def check_outputs(out: Path, *, algo: str, env: str, seeds: list[int], flags: dict):
  """Checks config.json, metrics.csv, summary.json and checkpoint/ of a finished run."""
  import jax
  import numpy as np

  from mgjax.algorithms import run_schedule

  # config.json: every Config field, the flags given, algo/env/seeds.
  config, data = load_config(out)
  assert data["algo"] == algo and data["env"] == env and data["seeds"] == seeds
  for name, value in flags.items():
    assert getattr(config, name) == value, name
  resolved = data["resolved"]
  schedule = run_schedule(config)
  assert resolved["batch_steps"] == config.num_envs * config.rollout_length
  assert resolved["num_iterations"] == schedule.num_iterations
  assert resolved["env_steps"] == (
    schedule.initial_steps + schedule.num_iterations * config.batch_steps
  )
  num_evals = schedule.num_iterations // config.eval_every

  # metrics.csv: one row per (seed, evaluation).
  header, rows = read_metrics(out)
  assert set(REQUIRED_COLUMNS) <= set(header), header
  assert len(rows) == len(seeds) * num_evals
  assert all(r["algo"] == algo and r["env"] == env for r in rows)
  assert sorted({int(r["seed"]) for r in rows}) == seeds
  last = {}
  for seed in seeds:
    mine = [r for r in rows if int(r["seed"]) == seed]
    assert len(mine) == num_evals
    iterations = [int(r["iteration"]) for r in mine]
    steps = [int(r["env_steps"]) for r in mine]
    assert iterations == [config.eval_every * (k + 1) for k in range(num_evals)]
    assert steps == [schedule.initial_steps + it * config.batch_steps for it in iterations]
    assert all(b > a for a, b in zip(steps, steps[1:]))
    assert steps[-1] == resolved["env_steps"]
    for r in mine:
      assert math.isfinite(float(r["eval_return"])), r
      assert float(r["wall_time_s"]) >= 0
      if algo in ("mg", "mbpo", "mg-sac"):
        cosine = float(r["model_grad_cosine"])  # non-empty
        assert -1.0 - 1e-5 <= cosine <= 1.0 + 1e-5, r
      if algo != "ppo":
        assert math.isfinite(float(r["model_nll"])), r
      if algo in ("mbpo", "mg-sac"):
        assert all(math.isfinite(float(r[c])) for c in MBPO_COLUMNS), r
        assert r["policy_loss"] == "", r
        assert (r["mg_loss"] == "") == (algo == "mbpo"), r
      elif algo == "ppo":
        assert all(r[c] == "" for c in MODEL_COLUMNS if c in r), r
    last[seed] = float(mine[-1]["eval_return"])

  # summary.json
  summary = json.loads((out / "summary.json").read_text())
  assert summary["status"] == "finished"
  assert summary["algo"] == algo and summary["env"] == env and summary["seeds"] == seeds
  assert summary["total_env_steps"] == resolved["env_steps"]
  assert set(summary["final_eval_return"]) == {str(s) for s in seeds}
  for seed in seeds:
    assert summary["final_eval_return"][str(seed)] == pytest.approx(last[seed], rel=1e-6)
  assert summary["final_eval_return_mean"] == pytest.approx(
    sum(last.values()) / len(seeds), rel=1e-6
  )
  assert summary["env_steps_per_s"] > 0
  assert summary["compile_time_s"] > 0
  assert summary["wall_time_s"] >= summary["compile_time_s"]
  assert summary["versions"]["jax"] == jax.__version__
  assert summary["host"] == outputs.host()

  # checkpoint/: restorable into the shape of the vmapped initial state.
  from mgjax import make_trainer
  from mgjax.run import restore_checkpoint

  assert (out / "checkpoint").is_dir()
  trainer = make_trainer(config)
  keys = jax.vmap(jax.random.key)(np.asarray(seeds, np.uint32))
  like = jax.eval_shape(jax.vmap(trainer.init), keys)
  state = restore_checkpoint(out / "checkpoint", like)
  policy = jax.tree.leaves(state.sac.actor if algo in SAC_ALGOS else state.agent_params["policy"])
  assert policy
  for leaf in policy:
    leaf = np.asarray(leaf)
    assert leaf.shape[0] == len(seeds)
    assert np.all(np.isfinite(leaf))
  assert np.asarray(state.env_steps).tolist() == [resolved["env_steps"]] * len(seeds)
  assert np.asarray(state.iteration).tolist() == [schedule.num_iterations] * len(seeds)
  return summary
