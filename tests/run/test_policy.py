"""`mgjax.load_policy` on run folders of earlier versions, and its one-line errors.

tests/data/v0.1 holds finished runs of mgjax 0.1 (test_compat.py). Their policies load for
every algorithm of that version, mg and mle included, whose full states no longer restore:
only the part of the state the policy reads is restored. The policies of current runs of
every algorithm are checked against the trainer's own evaluation in test_benchmark.py.
"""

import json
import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from paths import DATA

import mgjax
from mgjax.run import OutputError

OLD = DATA / "v0.1"
OBS = jnp.array([[0.5, -0.3, 0.2, 0.1], [-1.0, 0.4, 0.0, -0.2]])  # pointmass observations


@pytest.mark.parametrize("algo", ["mg", "mle", "ppo", "mbpo", "mg-sac"])
def test_policies_of_an_earlier_version_load(algo):
  acts = {seed: mgjax.load_policy(OLD / f"{algo}-finished", seed=seed) for seed in (0, 3)}
  actions = {seed: np.asarray(jax.jit(act)(OBS)) for seed, act in acts.items()}
  for a in actions.values():
    assert a.shape == (2, 2) and np.all(np.abs(a) <= 1.0)
  assert not np.array_equal(actions[0], actions[3])  # each seed's own parameters
  # One observation in, one action out (a batch of one: other kernels, other roundings).
  np.testing.assert_allclose(acts[0](OBS[0]), actions[0][0], rtol=1e-5, atol=1e-6)
  # The first seed by default.
  first = mgjax.load_policy(OLD / f"{algo}-finished")
  np.testing.assert_array_equal(jax.jit(first)(OBS), actions[0])
  # Sampled actions: a key is needed, and different keys give different actions.
  sample = mgjax.load_policy(OLD / f"{algo}-finished", deterministic=False)
  a, b = (np.asarray(sample(OBS, jax.random.key(k))) for k in (0, 1))
  assert a.shape == (2, 2) and np.all(np.abs(a) <= 1.0) and not np.array_equal(a, b)
  with pytest.raises(ValueError, match="^key: a stochastic policy"):
    sample(OBS)
  with pytest.raises(ValueError, match=r"^obs: shape \(3,\); expected \[4\]"):
    acts[0](jnp.zeros(3))


def _copy(tmp_path: Path, name: str = "run") -> Path:
  out = tmp_path / name
  shutil.copytree(OLD / "ppo-finished", out)
  return out


def _paused(tmp: Path) -> Path:
  out = _copy(tmp)
  shutil.rmtree(out / "checkpoint")
  summary = json.loads((out / "summary.json").read_text())
  (out / "summary.json").write_text(json.dumps({**summary, "status": "paused"}))
  return out


def _corrupt(tmp: Path) -> Path:
  out = _copy(tmp)
  shutil.rmtree(out / "checkpoint")
  (out / "checkpoint").mkdir()
  (out / "checkpoint" / "junk").write_text("not a checkpoint")
  return out


def _other_version(tmp: Path) -> Path:
  out = _copy(tmp)
  config = json.loads((out / "config.json").read_text())
  (out / "config.json").write_text(json.dumps({**config, "algo": "dreamer"}))
  return out


def _bad_json(tmp: Path) -> Path:
  out = _copy(tmp)
  (out / "config.json").write_text("{not json")
  return out


def _no_config(tmp: Path) -> Path:
  (tmp / "empty").mkdir()
  return tmp / "empty"


@pytest.mark.parametrize(
  "make, seed, reason",
  [
    (lambda tmp: tmp / "missing", None, "no such folder"),
    (_no_config, None, "no config.json (not an mgjax run folder)"),
    (_bad_json, None, "config.json is unreadable"),
    (_paused, None, "its status is 'paused'; a checkpoint is written when the run finishes"),
    (_corrupt, None, "': unreadable ("),
    (_other_version, None, "does not describe a run of this version of mgjax"),
    (_copy, 5, "seed=5: not a seed of run_dir="),
  ],
)
def test_bad_run_folders_are_one_line_errors_naming_the_path(tmp_path, make, seed, reason):
  path = make(tmp_path)
  with pytest.raises(OutputError) as e:
    mgjax.load_policy(path, seed=seed)
  message = str(e.value)
  assert "\n" not in message and reason in message, message
  assert str(path) in message, message
