"""Resume points: a paused or killed run continues with the numbers of an uninterrupted one.

One small vmapped mbpo run on the point-mass env (its state has everything a resume point
must carry: both replay buffers, the ensemble, SAC's optimisers, the simulator state and
PRNG keys) runs uninterrupted, paused and resumed, and resumed from an older point.
"""

import csv
import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import pytest
import tiny
from chunked import POINTMASS
from inprocess import run_main
from paths import ROOT

from mgjax.algorithms import make_config
from mgjax.run import ResumeError, outputs, resume, run

# 200 random steps, then 4 evaluation chunks of 2 iterations x 25 env steps (tests/tiny.py).
CONFIG = make_config(**tiny.MBPO)
SEEDS = [0, 1]


def _rows(out: Path) -> list[dict[str, str]]:
  with open(out / "metrics.csv", newline="") as f:
    return [{k: v for k, v in r.items() if k != "wall_time_s"} for r in csv.DictReader(f)]


def _run(out: Path, **kw) -> dict:
  return run(CONFIG, seeds=SEEDS, out=out, progress=False, log=lambda *_: None, **kw)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  base = tmp_path_factory.mktemp("resume")
  # Uninterrupted, saving a resume point after every chunk (removed once it finishes).
  whole = _run(base / "whole", save_every_s=0.0)
  # Paused after its first chunk, then resumed to the end.
  paused = _run(base / "paused", time_limit_s=0.0)
  first_rows = _rows(base / "paused")
  shutil.copytree(base / "paused" / "resume", base / "point-1")
  resumed = _run(base / "paused", resume=True)
  return base, whole, paused, first_rows, resumed


@pytest.mark.slow
def test_pause_writes_what_it_measured_and_a_resume_point(runs):
  base, whole, paused, first_rows, _ = runs
  assert whole["status"] == "finished" and whole["sessions"] == 1
  assert not (base / "whole" / "resume").exists()
  assert paused["status"] == "paused" and paused["total_env_steps"] == 250
  assert [(r["seed"], r["env_steps"]) for r in first_rows] == [("0", "250"), ("1", "250")]
  meta = json.loads((base / "point-1" / "meta.json").read_text())
  assert (meta["chunks"], meta["iteration"], meta["sessions"]) == (1, 2, 1)
  assert meta["devices"] == 1  # its layout, which the resumed run keeps
  assert meta["platform"] == resume.platform_key()


def test_a_resumed_run_keeps_its_saved_layout():
  assert resume.saved_devices({"devices": 5}) == 5
  assert resume.saved_devices(None) is None  # a new run: every device
  # Points of versions that did not record the layout were on one device of a CPU.
  assert resume.saved_devices({"chunks": 1}) == (1 if jax.devices()[0].platform == "cpu" else None)


@pytest.mark.slow
def test_resumed_run_equals_the_uninterrupted_one(runs):
  base, whole, _, first_rows, resumed = runs
  assert resumed["status"] == "finished" and resumed["sessions"] == 2
  assert not (base / "paused" / "resume").exists()
  rows = _rows(base / "paused")
  assert rows == _rows(base / "whole")  # every metric of every chunk, bit for bit
  assert rows[:2] == first_rows
  assert resumed["final_eval_return"] == whole["final_eval_return"]
  assert resumed["total_env_steps"] == 400


@pytest.mark.slow
def test_resume_from_an_older_point_drops_the_later_rows(runs):
  base, *_ = runs
  # A run killed after its point at chunk 1 had already written the rows of chunks 2-4.
  shutil.copytree(base / "point-1", base / "paused" / "resume")
  assert len(_rows(base / "paused")) == 8
  # ... and written, as far as its meta.json says, on a CPU with other vector instructions:
  # the run continues and says which fields differ.
  meta_path = base / "paused" / "resume" / "meta.json"
  meta = json.loads(meta_path.read_text())
  meta["platform"]["simd"] = "sse2"
  meta_path.write_text(json.dumps(meta))
  logged = []
  run(CONFIG, seeds=SEEDS, out=base / "paused", progress=False, log=logged.append, resume=True)
  assert _rows(base / "paused") == _rows(base / "whole")
  warned = [line for line in logged if "another platform" in line]
  assert len(warned) == 1 and f"simd sse2 -> {outputs.host()['simd']}" in warned[0], logged


def test_host_reads_the_cpu_and_its_widest_vector_extension():
  info = (
    "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse2 avx avx2 fma\n\n"
    "processor\t: 1\nmodel name\t: other\nflags\t\t: fpu avx512f\n"
  )
  assert outputs.host(info)["cpu"] == "AMD EPYC"
  assert outputs.host(info)["simd"] == "avx2"  # the first processor's flags
  assert outputs.host(info.replace("fma", "avx512f avx512bw"))["simd"] == "avx512f"
  assert outputs.host("")["simd"] == outputs.host("")["cpu"] == platform.machine()
  assert outputs.host()["cores"] == os.cpu_count()


def test_platform_changes_name_each_field_that_differs():
  saved = {"jaxlib": "0.10.2", "mujoco": "4.0.0", "simd": "avx2"}
  assert resume.platform_changes(saved, dict(saved)) == []
  assert resume.platform_changes(None, saved) == []  # a point of an earlier version
  assert resume.platform_changes(saved, {**saved, "mujoco": "4.0.1", "simd": "avx512f"}) == [
    "mujoco 4.0.0 -> 4.0.1",
    "simd avx2 -> avx512f",
  ]
  assert resume.platform_changes(saved, {**saved, "backend": "cpu"}) == ["backend None -> cpu"]


@pytest.mark.slow
def test_resume_refuses_another_config_or_no_point(runs, tmp_path):
  base, *_ = runs
  shutil.copytree(base / "point-1", tmp_path / "run" / "resume")
  with pytest.raises(ResumeError, match=r"tau=0\.005, not 0\.01"):
    run(
      make_config(**{**CONFIG.__dict__, "tau": 0.01}),
      seeds=SEEDS,
      out=tmp_path / "run",
      resume=True,
      progress=False,
    )
  with pytest.raises(ResumeError, match=r"seeds=\[0, 1\], not \[0\]"):
    run(CONFIG, seeds=[0], out=tmp_path / "run", resume=True, progress=False)
  with pytest.raises(ResumeError, match="no resume point"):
    run(CONFIG, seeds=SEEDS, out=tmp_path / "empty", resume=True, progress=False)


def _as_earlier_version(path: Path) -> None:
  """Renames branch_schedule and branch_length in a JSON or CSV file back to the names an
  earlier version wrote (rollout_schedule, rollout_length)."""
  text = path.read_text()
  assert "branch_schedule" in text or "branch_length" in text, path
  path.write_text(
    text.replace('"branch_schedule"', '"rollout_schedule"').replace(
      ",branch_length,", ",rollout_length,"
    )
  )


@pytest.mark.slow
def test_train_cli_resumes_a_run_of_an_earlier_version(runs, tmp_path):
  # A folder as the version before the rename left it after its first chunk: config.json,
  # the resume point's saved config (both with "resolved") and metrics.csv under the old
  # names. `train.py --resume` reads them as the current ones and finishes the run.
  base, *_ = runs
  out = tmp_path / "run"
  shutil.copytree(base / "paused", out)
  shutil.copytree(base / "point-1", out / "resume")
  meta = json.loads((out / "resume" / "meta.json").read_text())
  assert "resolved" in meta["identity"]["configs"][0]
  for path in (out / "config.json", out / "resume" / "meta.json", out / "metrics.csv"):
    _as_earlier_version(path)
  proc = _train("--resume", out, "--no-progress")
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "resumed at iteration 2" in proc.stdout and "final eval return" in proc.stdout
  assert json.loads((out / "config.json").read_text())["branch_schedule"] == [0, 1, 1, 3]
  assert _rows(out) == _rows(base / "whole")  # old rows kept, the rest as uninterrupted


def test_interrupted_save_keeps_the_older_point(tmp_path):
  out = tmp_path / "run"
  outputs.save_resume_point(out, [], {"iteration": 1})
  # Killed between moving the old point aside and renaming the new one into place.
  (out / "resume").replace(out / "resume.old")
  (out / "resume.tmp").mkdir()
  assert outputs.load_resume_meta(out)["iteration"] == 1
  outputs.save_resume_point(out, [], {"iteration": 2})
  assert outputs.load_resume_meta(out)["iteration"] == 2
  assert sorted(p.name for p in out.iterdir()) == ["resume"]


def _train(*args):
  return subprocess.run(
    [sys.executable, "experiments/train.py", *map(str, args)],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=300,
    env={
      "PYTHONPATH": str(ROOT),
      "PATH": "/usr/bin:/bin",
      # the session's compilation cache (conftest.py), not the user's
      "JAX_COMPILATION_CACHE_DIR": os.environ["JAX_COMPILATION_CACHE_DIR"],
    },
  )


@pytest.mark.parametrize(
  "args, expected",
  [
    (["--tau", "0.01"], "drop --tau"),
    (["--seeds", "3", "--out", "x"], "drop --seeds --out"),
    ([], "no resume point"),
  ],
)
def test_train_cli_resume_errors_are_one_line_exit_2(tmp_path, args, expected):
  # Rejected before anything compiles: main() in this process (tests/inprocess.py).
  proc = run_main(ROOT / "experiments" / "train.py", "--resume", tmp_path, *args, "--no-progress")
  assert proc.returncode == 2, proc.stderr
  lines = [line for line in proc.stderr.splitlines() if line.strip()]
  assert len(lines) == 1 and expected in lines[0] and str(tmp_path) in lines[0], proc.stderr


def test_config_from_its_json_is_the_same_config():
  # config.json / resume points store tuples as lists; from_dict restores the Config.
  data = json.loads(json.dumps(CONFIG.to_dict()))
  assert data["branch_schedule"] == [0, 1, 1, 3]
  from mgjax.algorithms import config_from_dict, describe
  from mgjax.config import Config

  assert Config.from_dict(data) == CONFIG
  # config.json itself (`describe`: with "resolved"), also under the field's earlier name.
  described = json.loads(json.dumps(describe(CONFIG)))
  assert "resolved" in described
  assert config_from_dict(described) == CONFIG
  earlier = {("rollout_schedule" if k == "branch_schedule" else k): v for k, v in described.items()}
  assert "branch_schedule" not in earlier
  assert config_from_dict(earlier) == CONFIG


@pytest.mark.slow
def test_train_cli_pauses_and_resumes(tmp_path):
  out = tmp_path / "run"
  # The smoke suite's ppo cell (its programs are shared through the session's cache).
  small = ("--algo", "ppo", *POINTMASS, "--seeds", "2", "--out", out)
  proc = _train(*small, "--time-limit", "0", "--tensorboard")
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert (
    f"paused at 2560 env steps; continue with: python experiments/train.py --resume {out}"
    in proc.stdout
  )
  proc = _train("--resume", out, "--no-progress")
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "resumed at iteration 5" in proc.stdout and "final eval return" in proc.stdout
  summary = json.loads((out / "summary.json").read_text())
  assert (summary["status"], summary["sessions"], summary["total_env_steps"]) == (
    "finished",
    2,
    5120,
  )
  assert [r["env_steps"] for r in _rows(out)] == ["2560", "2560", "5120", "5120"]
  # TensorBoard stays on for the resumed session and holds every evaluation once.
  from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

  for seed in ("0", "1"):
    events = EventAccumulator(str(out / "tensorboard" / f"seed_{seed}"))
    events.Reload()
    logged = [(e.step, e.value) for e in events.Scalars("eval_return")]
    assert [
      (int(r["env_steps"]), pytest.approx(float(r["eval_return"]), rel=1e-6))
      for r in _rows(out)
      if r["seed"] == seed
    ] == logged


def test_a_resumed_run_purges_what_tensorboard_logged_after_its_point(tmp_path):
  # A session that logged past the resume point the next one continues from (killed after
  # the logger thread wrote its events): the resumed session's values replace the later
  # ones, each step once.
  from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

  from mgjax.run.recording import TensorBoardWriter

  folder = tmp_path / "tensorboard"
  first = TensorBoardWriter(folder)
  first.write(
    [{"seed": 0, "env_steps": t, "eval_return": v} for t, v in ((100, 1.0), (200, 2.0), (300, 3.0))]
  )
  first.close()
  kept = [{"seed": "0", "env_steps": "100", "iteration": "1"}]  # metrics.csv's kept rows
  second = TensorBoardWriter(folder, kept, resumed=True)
  second.write(
    [{"seed": 0, "env_steps": t, "eval_return": v} for t, v in ((200, 20.0), (300, 30.0))]
  )
  second.close()
  events = EventAccumulator(str(folder / "seed_0"))
  events.Reload()
  assert [(e.step, e.value) for e in events.Scalars("eval_return")] == [
    (100, 1.0),
    (200, 20.0),
    (300, 30.0),
  ]
