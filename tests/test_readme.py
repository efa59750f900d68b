"""The README's commands and code run as written.

- Its MG example runs and raises cos(ĝ_M, g_R); the example program it names raises every
  seed's alignment.
- The library examples that docs/library.md carries run (the second continues the first).
- Its install and test commands are the ones `.ci/run` runs, and its user install is the
  package with the extra that its video and plot commands need (viz), not the test extras.
- Every script command it shows takes the flags it is given, and the main job's config is
  valid and fits in memory (`--dry-run`).
"""

import functools
import pathlib
import re
import shlex
import shutil
import subprocess
import sys

import pytest
from paths import ROOT

README = ROOT / "README.md"
LIBRARY = ROOT / "docs" / "library.md"
SCRIPTS = ("train", "evaluate", "plot")  # `mgjax SUB` is `python experiments/SUB.py`


def _blocks(path: pathlib.Path, lang: str) -> list[str]:
  return re.findall(rf"```{lang}\n(.*?)```", path.read_text(), re.S)


def _commands(path: pathlib.Path) -> list[str]:
  """The shell commands of a file's bash blocks: continuations joined, comments dropped."""
  commands = []
  for block in _blocks(path, "bash"):
    for line in block.replace("\\\n", " ").splitlines():
      line = re.sub(r"\s+#.*$", "", line).strip()
      if line and not line.startswith("#"):
        commands.append(" ".join(line.split()))
  return commands


def _script(command: str) -> list[str] | None:
  """The argv that runs a README command's script (without its arguments), or None."""
  words = shlex.split(command)
  if words[:1] == ["python"] and words[1].startswith("experiments/"):
    return [sys.executable, str(ROOT / words[1])]
  if words[:1] == ["mgjax"] and words[1] in SCRIPTS:
    exe = shutil.which("mgjax")
    return [exe, words[1]] if exe else [sys.executable, str(ROOT / f"experiments/{words[1]}.py")]
  return None


@functools.cache
def _help(*argv: str) -> str:
  done = subprocess.run([*argv, "--help"], capture_output=True, text=True, cwd=ROOT, timeout=300)
  assert done.returncode == 0, done.stderr
  return done.stdout


def test_readme_mg_example_raises_the_alignment(capsys):
  blocks = [b for b in _blocks(README, "python") if "model_gradient_loss" in b]
  assert len(blocks) == 1, "README: one example of model_gradient_loss"
  exec(compile(blocks[0], "README.md", "exec"), {})
  out = capsys.readouterr().out
  before = float(re.search(r"before: ([-+0-9.]+)", out).group(1))
  after = float(re.search(r"after: ([-+0-9.]+)", out).group(1))
  assert -1.0 <= before < after <= 1.0
  assert after > 0.9, out


def test_example_program_raises_every_seeds_alignment():
  examples = [c for c in _commands(README) if c.startswith("python examples/")]
  examples += re.findall(r"`(python examples/[^`]+)`", README.read_text())
  assert set(examples) == {"python examples/mg_loss_in_your_code.py"}
  argv = [sys.executable, *shlex.split(examples[0])[1:]]
  done = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=600)
  assert done.returncode == 0, done.stderr
  rows = re.findall(r"seed (\d+) alignment: initial ([-+0-9.]+) final ([-+0-9.]+)", done.stdout)
  assert len(rows) == 3, done.stdout
  for seed, initial, final in rows:
    assert float(final) > float(initial), f"seed {seed}: {done.stdout}"
    assert float(final) > 0.5, f"seed {seed}: {done.stdout}"


def test_library_examples_run(capsys):
  blocks = [b for b in _blocks(LIBRARY, "python") if "model_gradient_loss" in b]
  assert len(blocks) == 2, "docs/library.md: one example of model_gradient_loss, one of the actor's"
  namespace = {}
  for block in blocks:
    exec(compile(block, "docs/library.md", "exec"), namespace)
  lines = capsys.readouterr().out.strip().splitlines()
  assert [line.split()[0] for line in lines] == ["before", "after", "actor"], lines
  before, after, actor = (float(line.split()[1]) for line in lines)
  # The fit raises the alignment on the same rollouts (0.67 -> 0.92 when written).
  assert -1.0 <= before < after - 0.1 and after > 0.85, lines
  assert -1.0 <= actor <= 1.0


def test_readme_install_and_test_commands_are_cis():
  commands = _commands(README)
  ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
  for command in ('pip install -e ".[test]"', "python -m pytest -q"):
    assert command in commands and command in ci
  # The user's install: the package, with the viz extra where the README's commands draw or
  # encode (`plot`, `evaluate --video`: mgjax.extras); the test extras are for contributors.
  viz = any(c.startswith("mgjax plot") or "--video" in c for c in commands)
  assert commands[0] == ('pip install -e ".[viz]"' if viz else "pip install -e .")


def test_readme_script_commands_take_their_flags():
  text = README.read_text()
  commands = [c for c in _commands(README) if _script(c)]
  assert commands, "README: no script commands"
  for command in commands:
    usage = _help(*_script(command))
    for flag in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", command):
      assert flag in usage, f"{command}: {flag} not in its --help"
  # Flags the prose names are the training script's.
  prose = re.sub(r"```.*?```", "", text, flags=re.S)
  train = _help(sys.executable, str(ROOT / "experiments/train.py"))
  for flag in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", prose):
    assert flag in train, f"README names {flag}, which train.py does not take"


@pytest.mark.slow
def test_readme_main_job_is_valid_and_fits(tmp_path):
  train = ("train", "experiments/train.py")
  jobs = [c for c in _commands(README) if _script(c) and shlex.split(c)[1] in train]
  assert len(jobs) == 1, jobs
  words = shlex.split(jobs[0])
  args = words[2:]
  if "--out" in args:  # the dry run touches no folder; keep it out of the checkout anyway
    args[args.index("--out") + 1] = str(tmp_path / "run")
  done = subprocess.run(
    [*_script(jobs[0]), *args, "--dry-run"], capture_output=True, text=True, cwd=ROOT, timeout=600
  )
  assert done.returncode == 0, done.stderr
  assert not (tmp_path / "run").exists()


def test_readme_is_a_page_for_users():
  """At most 150 lines, with no dates in it: measurements and history are in results/."""
  text = README.read_text()
  assert len(text.splitlines()) <= 150
  assert not re.search(r"\b20\d\d-\d\d-\d\d\b", text)
