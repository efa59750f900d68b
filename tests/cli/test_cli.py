"""End-to-end tests of experiments/train.py (docs/design.md, "Outputs"), each run in a
subprocess.

- bad input: exit status 2, one line on stderr naming the field and the value, nothing run;
- `--rollout-schedule`, the earlier name of `--branch-schedule`, is accepted as its alias;
- short pointmass runs (mg, ppo; two seeds): config.json, metrics.csv, summary.json and a
  restorable checkpoint/;
- a numerical blow-up: exit status 1, one line naming seed and iteration, metrics so far kept,
  summary.json with status "diverged";
- tiny MJX runs (`ppo`, whose saved policy is then evaluated and rendered, and `mbpo`) on
  inverted_pendulum, MJX's cheapest env to compile: the MJX path of both loops, end to end.
  What is hopper's own (its termination function, its presets) is checked without them.
"""

import csv
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import browser
import numpy as np
import pytest
from chunked import POINTMASS
from inprocess import run_main
from paths import ROOT
from run_folder import REQUIRED_COLUMNS, check_outputs, read_metrics

from mgjax.run import cli
from mgjax.run.placement import cpu_devices

TRAIN = str(ROOT / "experiments" / "train.py")
SAC_ALIGNMENT = ROOT / "experiments" / "sac_alignment.py"
EVALUATE = ROOT / "experiments" / "evaluate.py"
PLOT = ROOT / "experiments" / "plot.py"

# mbpo: its preset (1 env, 7 members, ...) made small: 200 random steps, then
# 2 evaluation chunks of 4 iterations x 25 env steps.
MBPO_SMALL = (
  "--exploration-steps",
  "200",
  "--rollout-length",
  "25",
  "--eval-every",
  "4",
  "--num-eval-envs",
  "2",
  "--model-hidden",
  "32,32",
  "--sac-hidden",
  "32,32",
  "--ensemble-size",
  "3",
  "--elites",
  "2",
  "--rollout-batch",
  "64",
  "--updates-per-step",
  "2",
  "--sac-batch",
  "64",
  "--model-max-epochs",
  "2",
  "--model-epoch-steps",
  "5",
  "--branch-schedule",
  "0,1,1,3",
  "--no-progress",
)

# The PPO family's loop on MJX: ppo, whose program compiles in half of mg's time; what mg adds
# (the model, its MG steps) sees arrays, the same as on pointmass.
MJX = (
  "--env",
  "inverted_pendulum",
  "--algo",
  "ppo",
  "--seeds",
  "1",
  "--total-steps",
  "1024",
  "--num-envs",
  "8",
  "--rollout-length",
  "16",
  "--eval-every",
  "8",
  "--num-eval-envs",
  "2",
  "--episode-length",
  "50",
  "--policy-hidden",
  "16,16",
  "--value-hidden",
  "16,16",
  "--num-minibatches",
  "2",
  "--no-progress",
)


def run_script(path, *args, timeout=900) -> subprocess.CompletedProcess:
  # No XLA_FLAGS: each run places itself as the CLI does by default.
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  env["PYTHONPATH"] = str(ROOT)
  return subprocess.run(
    [sys.executable, str(path), *map(str, args)],
    cwd=ROOT,
    env=env,
    capture_output=True,
    text=True,
    timeout=timeout,
  )


def train(*args, timeout=900) -> subprocess.CompletedProcess:
  return run_script(TRAIN, *args, timeout=timeout)


# The cases that a script rejects before anything compiles run its main() in this process
# (tests/inprocess.py); one case per script runs it as a real process.
REAL_PROCESS_CASES = ("out_not_empty",)


def stderr_lines(proc) -> list[str]:
  return [line for line in proc.stderr.splitlines() if line.strip()]


# ------------------------------------------------------------------------ bad input
def _nonempty_dir(tmp: Path) -> Path:
  d = tmp / "used"
  d.mkdir()
  (d / "keep.txt").write_text("an earlier run")
  return d


def _under_regular_file(tmp: Path) -> Path:
  f = tmp / "plainfile"
  f.write_text("")
  return f / "sub"


def _regular_file(tmp: Path) -> Path:
  f = tmp / "plainfile"
  f.write_text("")
  return f


def _readonly_dir(tmp: Path) -> Path:
  d = tmp / "readonly"
  d.mkdir()
  d.chmod(0o500)
  return d


_is_root = hasattr(os, "geteuid") and os.geteuid() == 0

# (id, extra args, make --out from tmp_path or None, names of the field, the bad value)
BAD_INPUT = [
  ("env", ["--env", "nope"], None, ("env",), "nope"),
  ("algo", ["--algo", "foo"], None, ("algo",), "foo"),
  ("total_steps_zero", ["--total-steps", "0"], None, ("total_steps", "total-steps"), "0"),
  ("total_steps_negative", ["--total-steps", "-5"], None, ("total_steps", "total-steps"), "-5"),
  ("seeds_zero", ["--seeds", "0"], None, ("seeds",), "0"),
  ("seeds_not_int", ["--seeds", "abc"], None, ("seeds",), "abc"),
  ("seed_negative", ["--seed", "-1"], None, ("seed",), "-1"),
  ("num_envs_zero", ["--num-envs", "0"], None, ("num_envs", "num-envs"), "0"),
  ("env_group", ["--env-group", "5"], None, ("env_group", "env-group"), "5"),
  (
    "num_minibatches",
    ["--num-minibatches", "7"],
    None,
    ("num_minibatches", "num-minibatches"),
    "7",
  ),
  ("hidden_not_ints", ["--model-hidden", "3,x"], None, ("model_hidden", "model-hidden"), "3,x"),
  ("time_limit_negative", ["--time-limit", "-1"], None, ("time-limit",), "-1.0"),
  ("save_every_zero", ["--save-every", "0"], None, ("save-every",), "0.0"),
  ("out_not_empty", [], _nonempty_dir, ("out",), None),
  ("out_under_file", [], _under_regular_file, ("out",), None),
  ("out_is_file", [], _regular_file, ("out",), None),
  pytest.param(
    "out_readonly",
    [],
    _readonly_dir,
    ("out",),
    None,
    marks=pytest.mark.skipif(_is_root, reason="root ignores directory modes"),
  ),
]


def _case_id(case):
  return case.values[0] if hasattr(case, "values") else case[0]


@pytest.mark.parametrize(
  "name,args,make_out,field,value", BAD_INPUT, ids=[_case_id(c) for c in BAD_INPUT]
)
def test_bad_input_is_one_line_exit_2(tmp_path, name, args, make_out, field, value):
  out = make_out(tmp_path) if make_out else tmp_path / "run"
  before = sorted(p.name for p in out.iterdir()) if out.is_dir() else None
  value = str(out) if value is None else value
  try:
    if name in REAL_PROCESS_CASES:
      proc = train(*args, "--out", out, "--no-progress", timeout=120)
    else:
      proc = run_main(TRAIN, *args, "--out", out, "--no-progress")
  finally:
    if make_out is _readonly_dir:
      out.chmod(0o700)
  assert proc.returncode == 2, proc.stderr
  assert "Traceback" not in proc.stderr
  lines = stderr_lines(proc)
  assert len(lines) == 1, proc.stderr
  line = lines[0]
  assert any(re.search(rf"(?<![\w]){re.escape(f)}(?![\w])", line) for f in field), line
  assert re.search(rf"(?<![\w.]){re.escape(value)}(?![\w.])", line), line
  # Rejected before anything ran: no compile, nothing written into --out.
  assert "compiled" not in proc.stdout
  if make_out is None:
    assert not out.exists()
  elif before is not None:
    assert sorted(p.name for p in out.iterdir()) == before
    if name == "out_not_empty":
      assert (out / "keep.txt").read_text() == "an earlier run"


def test_pointmass_runs_have_the_smoke_suites_settings():
  # What lets them share compiled programs with the smoke suite's cells; a drift would only
  # make the suite slower, so it is checked here.
  sys.path.insert(0, str(ROOT / "experiments"))
  from lab.suites import SUITES

  from mgjax.algorithms import make_config

  args = [a for a in POINTMASS if a != "--no-progress"]
  fields = cli.config_fields(cli.add_config_flags(cli.Parser()).parse_args(args))
  for algo in ("mg", "ppo"):
    assert make_config(algo=algo, **fields) == SUITES["smoke"].config(algo, "pointmass", {})


# ------------------------------------------------------------- the earlier flag name
def test_rollout_schedule_is_an_alias_of_branch_schedule(tmp_path):
  parser = cli.add_config_flags(cli.Parser())  # train.py's Config flags
  for flag in ("--branch-schedule", "--rollout-schedule"):
    assert parser.parse_args([flag, "0,1,1,3"]).branch_schedule == (0, 1, 1, 3), flag
    assert not hasattr(parser.parse_args([flag, "0,1,1,3"]), "rollout_schedule"), flag
  # Through the CLI: either flag's value reaches the branch_schedule field, whose validation
  # rejects this one (exit 2, one line) before anything runs.
  for flag in ("--branch-schedule", "--rollout-schedule"):
    out = tmp_path / flag.strip("-")
    proc = train(
      "--algo",
      "mbpo",
      "--env",
      "pointmass",
      flag,
      "0,1",
      "--out",
      out,
      "--no-progress",
      timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "unrecognized" not in proc.stderr
    lines = stderr_lines(proc)
    assert len(lines) == 1, proc.stderr
    assert "branch_schedule=(0, 1)" in lines[0], lines[0]
    assert "compiled" not in proc.stdout
    assert not out.exists()


# ------------------------------------------------------------------ successful runs
@pytest.fixture(scope="module", params=["mg", "ppo"])
def pointmass_run(request, tmp_path_factory):
  algo = request.param
  out = tmp_path_factory.mktemp(f"pointmass-{algo}") / "run"
  extra = []
  if algo == "ppo":
    # Reuse an output directory that holds an earlier run: accepted with --overwrite.
    out.mkdir()
    (out / "metrics.csv").write_text("stale\n")
    (out / "summary.json").write_text('{"status": "stale"}')
    extra = ["--overwrite"]
  proc = train("--algo", algo, "--seeds", "2", *POINTMASS, "--out", out, "--tensorboard", *extra)
  return algo, out, proc


@pytest.mark.slow
def test_pointmass_run_succeeds(pointmass_run):
  algo, out, proc = pointmass_run
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "Traceback" not in proc.stderr
  for name in ("config.json", "metrics.csv", "summary.json", "checkpoint"):
    assert (out / name).exists(), name
  # Without XLA_FLAGS the CLI splits the CPU itself: the 2 seeds of mg and ppo get a device
  # per core (2 on 2 cores); test_sharding checks split runs against unsplit ones.
  devices = cpu_devices(algo, 2)
  assert f"on {devices} device(s)" in proc.stdout, proc.stdout
  assert json.loads((out / "summary.json").read_text())["devices"] == devices


@pytest.mark.slow
def test_pointmass_outputs(pointmass_run):
  algo, out, proc = pointmass_run
  assert proc.returncode == 0, proc.stderr[-3000:]
  check_outputs(
    out,
    algo=algo,
    env="pointmass",
    seeds=[0, 1],
    flags={
      "num_envs": 16,
      "rollout_length": 32,
      "eval_every": 5,
      "total_steps": 5120,
      "model_hidden": (32, 32),
      "mle_steps": 5,
      "mg_steps": 1,
      "mg_rollouts": 32,
      "model_rollouts": 64,
      "model_updates": 1,
    },
  )


@pytest.mark.slow
def test_overwrite_replaces_earlier_run(pointmass_run):
  algo, out, proc = pointmass_run
  if algo != "ppo":
    pytest.skip("the ppo run reuses a used --out")
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "stale" not in (out / "metrics.csv").read_text()
  assert json.loads((out / "summary.json").read_text())["status"] == "finished"


@pytest.mark.slow
def test_tensorboard_logs_what_metrics_csv_holds(pointmass_run):
  from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

  algo, out, proc = pointmass_run
  assert proc.returncode == 0, proc.stderr[-3000:]
  columns, rows = read_metrics(out)
  not_scalars = ("algo", "env", "seed", "iteration", "env_steps", "wall_time_s")
  assert sorted(p.name for p in (out / "tensorboard").iterdir()) == ["seed_0", "seed_1"]
  for seed in ("0", "1"):
    events = EventAccumulator(str(out / "tensorboard" / f"seed_{seed}"))
    events.Reload()
    logged = {
      tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]
    }
    mine = [r for r in rows if r["seed"] == seed]
    expected = {
      c: [(int(r["env_steps"]), float(r[c])) for r in mine if r[c] != ""]
      for c in columns
      if c not in not_scalars
    }
    assert logged.keys() == {c for c, v in expected.items() if v}
    assert "eval_return" in logged and ("mg_loss" in logged) == (algo == "mg")
    for tag, points in logged.items():
      assert [t for t, _ in points] == [t for t, _ in expected[tag]], tag
      np.testing.assert_allclose(
        [v for _, v in points], [v for _, v in expected[tag]], rtol=1e-6, err_msg=tag
      )  # float32 in the event file


@pytest.mark.slow
def test_plot_draws_run_folders(pointmass_run, tmp_path):
  algo, out, proc = pointmass_run
  assert proc.returncode == 0, proc.stderr[-3000:]
  proc = run_script(PLOT, out)
  assert proc.returncode == 0, proc.stderr[-3000:]
  for name in ("learning_curves.png", "metrics.png", "aggregate.png", "table.csv"):
    assert (out / name).stat().st_size > 0, name
  # Two folders with runs of the same algorithm and env: told apart by folder name.
  other = tmp_path / "again"
  shutil.copytree(out, other, ignore=shutil.ignore_patterns("checkpoint", "tensorboard"))
  proc = run_main(PLOT, out, other, "--out", tmp_path / "both")
  assert proc.returncode == 0, proc.stderr[-3000:]
  with open(tmp_path / "both" / "table.csv", newline="") as f:
    assert {r["algo"] for r in csv.DictReader(f)} == {f"{algo}:run", f"{algo}:again"}
  (tmp_path / "empty").mkdir()
  for args in ([tmp_path / "empty"], [out, other]):
    proc = run_main(PLOT, *args)
    assert proc.returncode == 2 and len(stderr_lines(proc)) == 1, proc.stderr


# ------------------------------------------------------------------------- blow-up
@pytest.mark.slow
def test_blow_up_stops_with_diverged_summary(tmp_path):
  # A learning rate of 1e30 makes the first Adam step overflow the policy parameters.
  out = tmp_path / "run"
  proc = train(
    "--algo",
    "ppo",
    "--learning-rate",
    "1e30",
    "--seeds",
    "2",
    "--seed",
    "3",
    *POINTMASS,
    "--out",
    out,
  )
  assert proc.returncode == 1, proc.stderr[-3000:]
  assert "Traceback" not in proc.stderr
  lines = stderr_lines(proc)
  assert len(lines) == 1, proc.stderr
  match = re.search(r"\bseed (\d+)\b.*\biteration (\d+)\b", lines[0])
  assert match, lines[0]
  assert int(match.group(1)) in (3, 4)
  iteration = int(match.group(2))
  assert 1 <= iteration <= 10

  header, rows = read_metrics(out)
  assert set(REQUIRED_COLUMNS) <= set(header)
  assert len(rows) >= 1
  assert {int(r["seed"]) for r in rows} == {3, 4}
  assert max(int(r["iteration"]) for r in rows) >= iteration  # the diverged chunk is kept
  summary = json.loads((out / "summary.json").read_text())
  assert summary["status"] == "diverged"
  assert summary["algo"] == "ppo" and summary["env"] == "pointmass"
  assert summary["seeds"] == [3, 4]


# ----------------------------------------------------------------------------- MJX
@pytest.fixture(scope="module")
def mjx_run(tmp_path_factory):
  out = tmp_path_factory.mktemp("mjx") / "run"
  return out, train(*MJX, "--out", out, timeout=1500)


@pytest.mark.slow
def test_ppo_mjx_run(mjx_run):
  out, proc = mjx_run
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "Traceback" not in proc.stderr
  check_outputs(
    out,
    algo="ppo",
    env="inverted_pendulum",
    seeds=[0],
    flags={
      "episode_length": 50,
      "num_envs": 8,
      "rollout_length": 16,
      "eval_every": 8,
      "total_steps": 1024,
      "policy_hidden": (16, 16),
    },
  )


@pytest.mark.slow
def test_evaluate_plays_and_renders_the_saved_mjx_policy(mjx_run, tmp_path):
  out, proc = mjx_run
  assert proc.returncode == 0, proc.stderr[-3000:]
  video, frame, page = tmp_path / "episode.mp4", tmp_path / "frame.png", tmp_path / "3d.html"
  proc = run_script(
    EVALUATE,
    out,
    "--episodes",
    "1",
    "--video",
    video,
    "--frame",
    frame,
    "--html",
    page,
    "--width",
    "160",
    "--height",
    "120",
    timeout=1500,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  result = json.loads((out / "eval.json").read_text())
  assert (result["algo"], result["env"], result["episodes"], result["deterministic"]) == (
    "ppo",
    "inverted_pendulum",
    1,
    True,
  )
  (length,), (episode_return,) = result["seeds"]["0"]["lengths"], result["seeds"]["0"]["returns"]
  assert 1 <= length <= 50 and np.isfinite(episode_return)  # --episode-length 50
  # The rendered episode is the evaluated one: its return, and a frame per state.
  shown = re.search(
    r"\((\d+) frames at 25 fps, seed 0, return ([^,]+), (\d+) steps\)", proc.stdout
  )  # inverted_pendulum's control step is 0.04 s
  assert shown, proc.stdout
  assert int(shown[1]) == length + 1 and int(shown[3]) == length
  assert float(shown[2]) == pytest.approx(episode_return, rel=1e-5)
  import imageio_ffmpeg

  reader = imageio_ffmpeg.read_frames(str(video))
  meta = next(reader)
  frames = [np.frombuffer(f, np.uint8).reshape(120, 160, 3) for f in reader]
  assert meta["size"] == (160, 120) and meta["fps"] == 25 and len(frames) == length + 1
  import matplotlib.image

  picture = matplotlib.image.imread(frame)
  assert picture.shape[:2] == (120, 160)
  assert picture[..., :3].std() > 0.05  # floor, sky and the pendulum, not a blank image
  # The 3D viewer of the same episode: every state, and it draws offline without errors.
  system = json.loads(re.search(r'id="brax-system">(.*?)</script>', page.read_text(), re.S)[1])
  assert len(system["states"]["x"]) == length + 1
  seen = browser.visit(page, "window.viewer !== undefined")
  assert seen.errors == [] and seen.requests == []
  assert seen.screenshot.std() > 0.05


@pytest.mark.slow
def test_mbpo_mjx_run(tmp_path):
  out = tmp_path / "run"
  proc = train(
    "--algo",
    "mbpo",
    "--env",
    "inverted_pendulum",
    "--seeds",
    "1",
    "--total-steps",
    "400",
    "--episode-length",
    "50",
    *MBPO_SMALL,
    "--out",
    out,
    timeout=1500,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "Traceback" not in proc.stderr
  check_outputs(
    out,
    algo="mbpo",
    env="inverted_pendulum",
    seeds=[0],
    flags={"num_envs": 1, "real_ratio": 0.05, "episode_length": 50},
  )


def test_small_flags_keep_the_rest_of_hoppers_mbpo_preset():
  # train.py's config of the MJX mbpo run's flags, on hopper: what they do not set stays
  # MBPO's hopper preset (one env, target entropy -1, a buffer of 1M rows, 7 members' 4-layer
  # model replaced only where a flag says so), what they set wins.
  from mgjax.algorithms import make_config
  from mgjax.config import Config

  args = ["--algo", "mbpo", "--env", "hopper", "--total-steps", "400"]
  args += [a for a in MBPO_SMALL if a != "--no-progress"]
  config = make_config(**cli.config_fields(cli.add_config_flags(cli.Parser()).parse_args(args)))
  default = Config()
  assert (config.num_envs, config.target_entropy, config.buffer_size) == (1, -1.0, 1_000_000)
  assert (default.num_envs, default.target_entropy) != (1, -1.0)  # the preset's, not Config's
  assert (config.ensemble_size, config.model_hidden, config.rollout_length) == (3, (32, 32), 25)
  assert config.branch_schedule == (0, 1, 1, 3) and config.real_ratio == 0.05


@pytest.mark.parametrize(
  "make_args, expected",
  [
    (lambda tmp: [str(tmp / "missing")], "no config.json, summary.json, checkpoint"),
    (lambda tmp: [str(tmp), "--draws", "0"], "--draws=0"),
    (lambda tmp: [str(tmp), "--draws", "x"], "--draws"),
  ],
)
def test_sac_alignment_bad_input_is_one_line_exit_2(tmp_path, make_args, expected):
  proc = run_main(SAC_ALIGNMENT, *make_args(tmp_path))
  assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
  assert len(stderr_lines(proc)) == 1 and expected in proc.stderr, proc.stderr


def test_sac_alignment_rejects_other_algorithms(tmp_path):
  for name in ("config.json", "summary.json"):
    (tmp_path / name).write_text(json.dumps({"algo": "mg"}))
  (tmp_path / "checkpoint").mkdir()
  proc = run_script(SAC_ALIGNMENT, tmp_path, timeout=120)
  assert proc.returncode == 2 and len(stderr_lines(proc)) == 1, proc.stderr
  assert "algo='mg'" in proc.stderr
