"""The `mgjax` command line (mgjax/cli): the console script and `python -m mgjax`, each
flag's help, the one-line refusals of mistyped input, and what a first launch prints:

- `mgjax --help` and `python -m mgjax --help` list the commands; `mgjax COMMAND --help`
  names the command as the user runs it; the wheel installs the console script (slow);
- every Config flag's help is its field's whole comment and names its choices;
- `--resume` of a missing folder, `--env hoper`, `--seed 5` without `--seeds`, an
  abbreviated flag, a `--dry-run` that does not fit: one line naming the field and the
  value, exit status 2;
- a first launch on pointmass (a fresh compile cache) says it compiles, prints a line at
  least every 15 s until training starts, and ends with its folder and next commands, which
  run as printed; the second launch says how long the compile took the first time; an
  evaluation that replaces an eval.json says so;
- `make_train` reports to the same `mgjax.run.progress.Progress` from inside its program, with
  the numbers of a program without it (slow).
"""

import configparser
import dataclasses
import os
import re
import shlex
import subprocess
import sys
import threading
import time
import typing
from pathlib import Path

import pytest
from chunked import POINTMASS
from inprocess import run_main
from paths import ROOT

from mgjax import cli as commands
from mgjax.cli import train as train_command
from mgjax.config import Config
from mgjax.run import cli
from mgjax.run.progress import Progress

TRAIN = ROOT / "experiments" / "train.py"
EVALUATE = ROOT / "experiments" / "evaluate.py"


def _env(**extra) -> dict:
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  env["PYTHONPATH"] = str(ROOT)
  return {**env, **extra}


def _python(*args, cwd=ROOT, timeout=120, **env) -> subprocess.CompletedProcess:
  return subprocess.run(
    [sys.executable, *map(str, args)],
    cwd=cwd,
    env=_env(**env),
    capture_output=True,
    text=True,
    timeout=timeout,
  )


def _one_line(proc) -> str:
  lines = [line for line in proc.stderr.splitlines() if line.strip()]
  assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
  assert "Traceback" not in proc.stderr and len(lines) == 1, proc.stderr[-2000:]
  return lines[0]


# ------------------------------------------------------------------- the entry points
def test_python_m_mgjax_lists_the_commands(tmp_path):
  proc = _python("-m", "mgjax", "--help", cwd=tmp_path)
  assert proc.returncode == 0, proc.stderr
  assert proc.stdout.startswith("usage: python -m mgjax {train,evaluate,plot}"), proc.stdout
  for name in ("train", "evaluate", "plot"):
    assert re.search(rf"^  {name} ", proc.stdout, re.M), proc.stdout
  proc = _python("-m", "mgjax", "trian", cwd=tmp_path)
  assert "command='trian'" in _one_line(proc) and "did you mean train" in proc.stderr
  proc = _python("-m", "mgjax", "train", "--help", cwd=tmp_path)
  assert proc.returncode == 0 and proc.stdout.startswith("usage: python -m mgjax train ")
  assert "python -m mgjax train --resume runs/mbpo" in proc.stdout, proc.stdout


def test_console_script_is_declared_and_runs():
  parser = configparser.ConfigParser()
  parser.read(ROOT / "setup.cfg")
  scripts = parser["options.entry_points"]["console_scripts"].strip().splitlines()
  assert scripts == ["mgjax = mgjax.cli:console"]
  # What the installed `mgjax` script runs: mgjax.cli.console, with its argv.
  code = "import sys; from mgjax.cli import console; sys.argv = ['mgjax', *sys.argv[1:]]; console()"
  proc = _python("-c", code, "plot", "--help")
  assert proc.returncode == 0, proc.stderr
  assert proc.stdout.startswith("usage: mgjax plot "), proc.stdout
  assert "mgjax plot runs/a runs/b --out plots/" in proc.stdout
  from importlib import metadata

  installed = [e for e in metadata.entry_points(group="console_scripts") if e.name == "mgjax"]
  if installed:  # an install of this checkout (pip install -e .)
    assert installed[0].value == "mgjax.cli:console"


@pytest.mark.parametrize("name", ["train", "evaluate", "plot"])
def test_each_command_names_itself_as_run(name, capsys):
  with pytest.raises(SystemExit) as done:
    commands.main([name, "--help"])
  assert done.value.code == 0
  text = capsys.readouterr().out
  assert text.startswith(f"usage: mgjax {name} "), text[:200]
  assert "python experiments/" not in text
  # The source checkout's script: the same flags, under its own name.
  proc = _python(ROOT / "experiments" / f"{name}.py", "--help")
  assert proc.returncode == 0 and proc.stdout.startswith(f"usage: {name}.py "), proc.stderr
  flags = lambda s: sorted(set(re.findall(r"--[a-z][\w-]*", s)))
  assert flags(proc.stdout) == flags(text)


@pytest.mark.slow
def test_wheel_installs_the_command_line(tmp_path):
  # The wheel, installed without its dependencies into a venv that sees this one's packages.
  # (A full install, `pip install mgjax-*.whl` in a bare venv, needs the package index.)
  wheels = tmp_path / "wheels"
  proc = subprocess.run(
    [sys.executable, "-m", "pip", "wheel", str(ROOT), "-w", str(wheels), "--no-deps", "-q"],
    capture_output=True,
    text=True,
    timeout=600,
  )
  if proc.returncode != 0 and "bdist_wheel" in proc.stderr + proc.stdout:
    pytest.skip("no wheel builder here (setuptools' bdist_wheel)")
  assert proc.returncode == 0, proc.stderr[-3000:]
  (wheel,) = wheels.glob("mgjax-*.whl")
  import zipfile

  names = zipfile.ZipFile(wheel).namelist()
  assert "mgjax/cli/train.py" in names and "mgjax/__main__.py" in names
  entry = next(n for n in names if n.endswith("entry_points.txt"))
  assert "mgjax = mgjax.cli:console" in zipfile.ZipFile(wheel).read(entry).decode()
  venv = tmp_path / "venv"
  subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
  # The dependencies: this environment's packages, after the venv's own (their .pth files,
  # as this checkout's editable install, are not read from there).
  import sysconfig

  (site,) = venv.glob("lib/python*/site-packages")
  paths = dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib"))
  (site / "dependencies.pth").write_text("\n".join(paths) + "\n")
  pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", str(wheel)]
  proc = subprocess.run(pip, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "XLA_FLAGS")}
  for args in (["--help"], ["train", "--help"]):
    proc = subprocess.run(
      [str(venv / "bin" / "mgjax"), *args],
      cwd=tmp_path,
      env=env,
      capture_output=True,
      text=True,
      timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
  assert proc.stdout.startswith("usage: mgjax train ")
  where = subprocess.run(
    [str(venv / "bin" / "python"), "-c", "import mgjax.cli; print(mgjax.cli.__file__)"],
    cwd=tmp_path,
    env=env,
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert str(venv) in where.stdout, where.stdout  # the wheel's copy, not this checkout


# ------------------------------------------------------------------------------ help
SOURCE = '''
  # -- section
  a: int = 1  # first line,
  # continued at the field's own indent,
    # deeper,
# and shallower
  b: str = "x"  # one line
  c: int = 0
  # a comment line under a field without its own
  # -- mbpo, mg-sac (a heading, and its continuation
  #    here)
  d: float = 0.5  # d's

  e: int = 2

  # not e's: a blank line came first
'''


def test_field_comments_take_continuations_at_any_indent():
  docs = cli._field_comments(SOURCE)
  assert docs == {
    "a": "first line, continued at the field's own indent, deeper, and shallower",
    "b": "one line",
    "c": "a comment line under a field without its own",
    "d": "d's",
  }


def _config_flag_helps() -> dict[str, str]:
  parser = cli.add_config_flags(cli.Parser())
  return {
    a.dest: a.help.replace("%%", "%")
    for a in parser._actions
    if a.dest in {f.name for f in dataclasses.fields(Config)}
  }


def test_every_flag_help_ends_its_sentence():
  helps = _config_flag_helps()
  assert set(helps) == {f.name for f in dataclasses.fields(Config)}
  docs = cli._field_comments()
  for name, text in helps.items():
    assert text.count("(") == text.count(")"), (name, text)
    assert text.count("[") == text.count("]"), (name, text)
    doc = docs.get(name, "")
    assert text.startswith(doc), (name, text)
    assert not re.search(r"(,|:|\||\(|\bthe|\ba|\bof|\bper|\band|\bor|\bwith)$", doc), (name, doc)
  # The nine that were cut at their first line.
  assert "buffer (all real data)" in helps["mg_start"]
  assert "| block (each step a random permutation" in helps["elite_draw"]
  assert "length x->y (1 epoch = 1000 env steps)" in helps["branch_schedule"]
  for name in (
    "env_group",
    "distractor_dims",
    "real_grad_ema",
    "real_grad_states",
    "model_patience",
    "model_fit_budget",
  ):
    assert len(docs[name]) > 80, (name, docs[name])


def test_every_field_of_a_fixed_set_lists_its_choices():
  from mgjax.algorithms import REGISTRY

  helps, choices = _config_flag_helps(), cli.field_choices()
  hints = typing.get_type_hints(Config)
  text_fields = {f.name for f in dataclasses.fields(Config) if hints[f.name] is str}
  assert text_fields - {"env"} <= set(choices), text_fields - set(choices)
  assert choices["algo"] == tuple(REGISTRY) and "mjx" in choices["backend"]
  assert {"batch", "buffer"} == set(choices["mg_start"])
  for name, names in choices.items():
    for choice in names:
      assert re.search(rf"(?<![\w-]){re.escape(choice)}(?![\w-])", helps[name]), (name, choice)
  assert "brax env" in helps["env"]  # any name, no fixed set


# --------------------------------------------------------------------- bad input
def test_resume_of_a_missing_folder_says_so(tmp_path):
  missing = tmp_path / "nope"
  line = _one_line(run_main(TRAIN, "--resume", missing, "--no-progress"))
  assert f"resume={str(missing)!r}: no such folder" in line, line
  (tmp_path / "file").write_text("")
  line = _one_line(run_main(TRAIN, "--resume", tmp_path / "file", "--no-progress"))
  assert "not a folder" in line, line


def test_a_mistyped_env_gets_the_closest_names(tmp_path):
  out = tmp_path / "run"
  line = _one_line(run_main(TRAIN, "--env", "hoper", "--out", out, "--no-progress"))
  assert line.startswith("train.py: error: env='hoper': unknown environment"), line
  assert "did you mean hopper?" in line and "any brax env name" in line, line
  assert "walker2d" not in line  # not every name
  assert not out.exists()


def test_seed_without_seeds_is_refused(tmp_path):
  out = tmp_path / "run"
  line = _one_line(run_main(TRAIN, "--env", "pointmass", "--seed", "5", "--out", out))
  assert "seed=5" in line and "--seeds 5" in line and "--seeds 1 --seed 5" in line, line
  assert not out.exists()
  line = _one_line(run_main(TRAIN, "--env", "pointmass", "--see", "5", "--out", out))
  assert "unrecognized arguments: --see 5" in line, line  # no abbreviations


def test_dry_run_that_does_not_fit_exits_2(tmp_path, monkeypatch):
  from mgjax.run import memory

  out = tmp_path / "run"
  args = ("--env", "pointmass", "--dry-run", "--out", out, "--no-progress")
  proc = run_main(TRAIN, *args)
  assert proc.returncode == 0 and "fits" in proc.stdout, proc.stderr
  monkeypatch.setattr(memory, "available", lambda mesh: (2**20, "the host"))  # 1 MiB
  proc = run_main(TRAIN, *args)
  line = _one_line(proc)
  assert line.startswith("train.py: error: seeds=1") and "the host has 1 MiB available" in line, (
    line
  )
  assert "does not fit" in proc.stdout  # the estimate is printed first
  assert not out.exists()


# ------------------------------------------------------------------- progress lines
def test_progress_beats_while_a_step_blocks():
  lines = []
  shown = Progress(10, every_s=0.3, log=lambda line: lines.append((time.monotonic(), line)))
  shown.phase("compiling", say="compiling ...")
  with shown:
    time.sleep(1.1)  # a step that holds no lock, as XLA's compile
    shown.training()
    threading.Thread(target=lambda: [shown(i) for i in range(1, 11)]).start()
    time.sleep(0.2)
  texts = [line for _, line in lines]
  assert texts[0] == "compiling ..." and re.fullmatch(r"  compiling: \d s", texts[1]), texts
  assert sum(t.startswith("  compiling:") for t in texts) >= 3, texts
  assert texts[-1].startswith("  training: iteration 10 of 10"), texts
  gaps = [b - a for (a, _), (b, _) in zip(lines, lines[1:])]
  assert max(gaps[:3]) < 0.6, gaps
  quiet = []
  with Progress(10, enabled=False, every_s=0.1, log=quiet.append) as off:
    time.sleep(0.3)
    off(10)
  assert quiet == []


def test_next_commands_name_the_folder():
  out = Path("runs") / "mg hopper-1"
  text = train_command.next_commands(out, "mgjax", renders=True)
  lines = text.splitlines()
  assert lines[0] == f"run folder: {out}"
  commands_ = [shlex.split(line.split("  # ")[0]) for line in lines[2:]]
  assert commands_ == [
    ["mgjax", "evaluate", str(out)],
    ["mgjax", "evaluate", str(out), "--video", str(out / "episode.mp4")],
    ["mgjax", "evaluate", str(out), "--html", str(out / "episode.html")],
    ["mgjax", "plot", str(out)],
  ]
  text = train_command.next_commands(out, None, renders=False, first="lr=0.1")
  assert "python experiments/evaluate.py " + shlex.quote(str(out / "lr=0.1")) in text
  assert "--video" not in text and "no MuJoCo model" in text


# ------------------------------------------------------------------- a first launch
def _launch(args, cwd: Path, cache: Path, timeout=900):
  """`python -m mgjax train ARGS` -> (exit status, [(seconds since launch, line)]),
  stdout and stderr together, a tqdm bar's redraws as lines."""
  start = time.monotonic()
  proc = subprocess.Popen(
    [sys.executable, "-m", "mgjax", "train", *map(str, args)],
    cwd=cwd,
    env=_env(MGJAX_COMPILE_CACHE=str(cache)),
    stdout=subprocess.PIPE,
    stderr=subprocess.STDOUT,
    bufsize=0,
  )
  lines, part = [], b""
  while True:
    char = proc.stdout.read(1)
    if not char:
      break
    if char in b"\r\n":
      if part.strip():
        lines.append((time.monotonic() - start, part.decode(errors="replace")))
      part = b""
    else:
      part += char
  assert proc.wait(timeout=timeout) == 0, "\n".join(line for _, line in lines[-30:])
  return lines


@pytest.fixture(scope="module")
def first_launch(tmp_path_factory):
  cwd, cache = tmp_path_factory.mktemp("launch"), tmp_path_factory.mktemp("cache")
  flags = [a for a in POINTMASS if a != "--no-progress"]
  return cwd, cache, flags, _launch(flags, cwd, cache)


@pytest.mark.slow
def test_first_launch_is_never_silent_for_15_s(first_launch):
  cwd, cache, flags, lines = first_launch
  texts = [line for _, line in lines]
  compiled = next(i for i, t in enumerate(texts) if t.startswith("compiled in"))
  compiling = next(i for i, t in enumerate(texts) if t.startswith("compiling the training"))
  assert compiling < compiled and "first launch" in texts[compiling], texts[: compiled + 1]
  times = [0.0] + [t for t, _ in lines[: compiled + 1]]
  gaps = [b - a for a, b in zip(times, times[1:])]
  assert max(gaps) <= 15.0, list(zip(gaps, ["(launch)"] + texts))
  # A second launch of the same settings says how long the first one's compile took.
  first_s = float(re.match(r"compiled in ([\d.]+)s", texts[compiled])[1])
  again = _launch([*flags, "--out", cwd / "again"], cwd, cache)
  note = next(t for _, t in again if t.startswith("compiling the training"))
  assert f"(it took {first_s:.0f} s last time)" in note, note


@pytest.mark.slow
def test_first_launch_ends_with_commands_that_run(first_launch):
  cwd, cache, flags, lines = first_launch
  texts = [line for _, line in lines]
  folder = next(t for t in texts if t.startswith("run folder: "))[len("run folder: ") :]
  assert re.fullmatch(r"runs/mg-pointmass-\d{8}-\d{6}", folder), folder  # the default folder
  assert (cwd / folder / "summary.json").exists()
  at = texts.index("next:")
  printed = [shlex.split(t.split("  # ")[0]) for t in texts[at + 1 :] if t.startswith("  python")]
  assert [c[3] for c in printed] == ["evaluate", "plot"], printed  # pointmass: no video
  for command in printed:
    assert command[:3] == ["python", "-m", "mgjax"] and command[4] == folder, command
    proc = _python(*command[1:], cwd=cwd, timeout=600, MGJAX_COMPILE_CACHE=str(cache))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "replaced" not in proc.stdout
  assert (cwd / folder / "eval.json").exists() and (cwd / folder / "learning_curves.png").exists()
  # The printed evaluate command again: it says that it replaces the eval.json there.
  proc = _python(*printed[0][1:], cwd=cwd, timeout=600, MGJAX_COMPILE_CACHE=str(cache))
  assert proc.returncode == 0, proc.stderr[-3000:]
  wrote = next(line for line in proc.stdout.splitlines() if line.startswith("wrote "))
  assert wrote == (
    f"wrote {folder}/eval.json (replaced the earlier one, of 10 deterministic episode(s) per seed)"
  ), wrote


def test_evaluate_refuses_a_missing_run_in_one_line(tmp_path):
  line = _one_line(run_main(EVALUATE, tmp_path / "nope"))
  assert str(tmp_path / "nope") in line, line


@pytest.mark.slow
def test_make_train_reports_to_the_same_progress_with_the_same_numbers():
  import jax
  import numpy as np

  import mgjax

  config = mgjax.make_config(
    algo="ppo", env="pointmass", total_steps=1024, num_envs=8, rollout_length=16, eval_every=4
  )
  keys = jax.random.split(jax.random.key(0), 2)
  _, plain = jax.jit(jax.vmap(mgjax.make_train(config)))(keys)
  lines = []
  progress = Progress(config, every_s=0.5, log=lines.append)
  assert progress.total == 8
  with progress:
    _, reported = jax.jit(jax.vmap(mgjax.make_train(config, progress=progress)))(keys)
  jax.tree.map(np.testing.assert_array_equal, plain, reported)
  assert lines[0].startswith("compiling the training program"), lines
  assert any(line.startswith("training started after") for line in lines), lines
  assert lines[-1].startswith("  training: iteration 8 of 8"), lines
