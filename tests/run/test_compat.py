"""Run folders written by mgjax 0.1 (before the package was restructured around
`mgjax.algorithms`) still load: resume points continue with the numbers the old version
gave uninterrupted, checkpoints restore, or both stop with a one-line error that says why.

data/v0.1/ALGO-paused is a run of test_regression's config for ALGO, paused after its first
chunk by mgjax 0.1 (`run(..., time_limit_s=0)`); data/v0.1/ALGO-finished is the same run
uninterrupted, with its metrics.csv and checkpoint. Old names in them (config field
`rollout_schedule`, CSV column `rollout_length`) are read as the new ones. Their numbers
are compared bit for bit only on the platform that wrote them (`recorded.platform_key`).
"""

import json
import shutil
from pathlib import Path

import jax
import numpy as np
import pytest
from paths import DATA
from recorded import platform_key

from mgjax import algorithms
from mgjax.run import ResumeError, outputs, run

OLD = DATA / "v0.1"
SEEDS = [0, 3]
# Where mgjax 0.1 wrote data/v0.1: its numbers are reproducible bit for bit only there.
WRITTEN_ON = {"jaxlib": "0.10.2", "backend": "cpu", "simd": "avx2", "vendor": "AuthenticAMD"}


def _config(folder: Path):
  return algorithms.config_from_dict(json.loads((folder / "config.json").read_text()))


def _as_old(rows, old_rows):
  """rows with only the columns of old_rows (metrics added since are not in them), without
  the clock."""
  columns = set(old_rows[0]) - {"wall_time_s"}
  return [{k: v for k, v in r.items() if k in columns} for r in rows]


@pytest.fixture(scope="module", params=["ppo", "mbpo", "mg-sac"])
def resumed(request, tmp_path_factory):
  """(metrics rows of ALGO's old resume point continued to the end, those of its old
  uninterrupted run), the continuation run once per module."""
  algo = request.param
  out = tmp_path_factory.mktemp("resumed") / algo
  shutil.copytree(OLD / f"{algo}-paused", out)
  run(_config(out), seeds=SEEDS, out=out, resume=True, progress=False, log=lambda *_: None)
  assert json.loads((out / "summary.json").read_text())["status"] == "finished"
  return (
    outputs.read_metrics(out / "metrics.csv"),
    outputs.read_metrics(OLD / f"{algo}-finished" / "metrics.csv"),
  )


@pytest.mark.slow
def test_old_resume_point_finishes_its_schedule(resumed):
  rows, expected = resumed
  where = lambda rs: [(r["seed"], r["iteration"], r["env_steps"]) for r in rs]
  assert where(rows) == where(expected)
  assert all(set(expected[0]) <= set(r) for r in rows)  # every old column, under its new name
  assert all(np.isfinite(float(r["eval_return"])) for r in rows)


@pytest.mark.slow
def test_old_resume_point_continues_with_the_old_numbers(resumed):
  if platform_key() != WRITTEN_ON:
    pytest.skip(f"data/v0.1 was written on {WRITTEN_ON}, this is {platform_key()}")
  rows, expected = resumed
  assert _as_old(rows, expected) == _as_old(expected, expected)


@pytest.mark.parametrize("algo", ["mg", "mle"])
def test_old_mg_and_mle_resume_points_stop_with_one_line_error(algo, tmp_path):
  """Their real buffer has gained the `termination` column, so the saved state no longer
  fits: the run stops before compiling its chunk, naming the folder and the reason."""
  out = tmp_path / algo
  shutil.copytree(OLD / f"{algo}-paused", out)
  with pytest.raises(ResumeError) as e:
    run(_config(out), seeds=SEEDS, out=out, resume=True, progress=False, log=lambda *_: None)
  assert "\n" not in str(e.value)
  assert str(e.value).startswith(f"resume='{out}': the saved state has ")
  assert "another version of mgjax; start the run afresh" in str(e.value)


def _like(config):
  trainer = algorithms.make_trainer(config)
  keys = jax.vmap(jax.random.key)(np.asarray(SEEDS, np.uint32))
  return jax.eval_shape(jax.vmap(trainer.init), keys)


@pytest.mark.parametrize("algo", ["ppo", "mbpo", "mg-sac"])
def test_old_checkpoints_restore(algo):
  folder = OLD / f"{algo}-finished"
  config = _config(folder)
  state = outputs.restore_checkpoint(folder / "checkpoint", _like(config))
  iterations = algorithms.run_schedule(config).num_iterations
  assert np.asarray(state.iteration).tolist() == [iterations] * len(SEEDS)
  assert all(
    np.all(np.isfinite(x)) for x in jax.tree.leaves(state) if np.issubdtype(x.dtype, np.floating)
  )


@pytest.mark.parametrize("algo", ["mg", "mle"])
def test_old_mg_and_mle_checkpoints_name_what_is_missing(algo):
  folder = OLD / f"{algo}-finished"
  with pytest.raises(outputs.OutputError) as e:
    outputs.restore_checkpoint(folder / "checkpoint", _like(_config(folder)))
  assert str(e.value) == (
    f"checkpoint='{folder / 'checkpoint'}': has no "
    ".buffer.data['termination'] (written by another version of mgjax)"
  )


def test_bad_checkpoint_folders_are_one_line_errors(tmp_path):
  like = _like(_config(OLD / "ppo-finished"))
  with pytest.raises(outputs.OutputError, match=r"^checkpoint='.*missing': no checkpoint there$"):
    outputs.restore_checkpoint(tmp_path / "missing", like)
  (tmp_path / "corrupt").mkdir()
  (tmp_path / "corrupt" / "junk").write_text("not a checkpoint")
  with pytest.raises(outputs.OutputError) as e:
    outputs.restore_checkpoint(tmp_path / "corrupt", like)
  assert str(e.value).startswith(f"checkpoint='{tmp_path / 'corrupt'}': unreadable (")
  assert "\n" not in str(e.value)


def test_old_config_names_are_read():
  config = _config(OLD / "mbpo-finished")
  saved = json.loads((OLD / "mbpo-finished" / "config.json").read_text())
  assert "rollout_schedule" in saved and "branch_schedule" not in saved
  assert config.branch_schedule == tuple(saved["rollout_schedule"])
  header = (OLD / "mbpo-finished" / "metrics.csv").read_text().splitlines()[0].split(",")
  assert "rollout_length" in header
  assert "branch_length" in outputs.read_metrics(OLD / "mbpo-finished" / "metrics.csv")[0]
