"""The optional dependencies (mgjax/extras.py): matplotlib, imageio-ffmpeg and tensorboardX.

- In an interpreter where they cannot be imported, `import mgjax`, a config, a trainer and
  the modules of training and evaluating load and work;
- there, plotting, `--video`, `--frame` and TensorBoard logging raise MissingExtra naming
  the extra that installs what they need, and the commands report it in one line, exit
  status 2, before they start their work;
- setup.cfg's extras hold what mgjax/extras.py says each module comes from, the test extra
  pulls in all of them, and requirements.txt lists the same as setup.cfg.
"""

import configparser
import sys
from pathlib import Path

import pytest
from blocked import run_without
from paths import ROOT

from mgjax import extras

BLOCKED = ("matplotlib", "imageio", "imageio_ffmpeg", "tensorboardX")


def _run(code: str, tmp_path: Path):
  """`code` in a fresh interpreter, in tmp_path, where the optional modules cannot be imported."""
  return run_without(BLOCKED, code, timeout=300, cwd=tmp_path)


def test_mgjax_works_without_the_extras(tmp_path):
  out = _run(
    f"""
from pathlib import Path

try:
  import matplotlib.pyplot
  raise SystemExit("the block did not hold")
except ImportError:
  pass
import mgjax
import mgjax.analysis.curves, mgjax.run.evaluation
sys.path.insert(0, {str(ROOT / 'experiments')!r})
import lab.probe  # the research harness beside the scripts
from mgjax.cli import evaluate, plot, train
from mgjax.run import recording

config = mgjax.algorithms.make_config(algo="mg", env="pointmass")
trainer = mgjax.make_trainer(config)
writer = recording.MetricsWriter(Path("metrics.csv"))  # without TensorBoard
writer.write([dict(algo="mg", env="pointmass", seed=0, iteration=0, env_steps=1)])
writer.close()
loaded = [m for m, v in sys.modules.items() if m.split(".")[0] in {BLOCKED!r} and v]
assert not loaded, loaded
print("ok", config.algo, config.env, trainer.config.env)
""",
    tmp_path,
  )
  assert out.returncode == 0, out.stderr
  assert out.stdout.split() == ["ok", "mg", "pointmass", "pointmass"], out.stdout
  assert (tmp_path / "metrics.csv").read_text().startswith("algo,env,seed")


def test_plotting_without_matplotlib_names_the_viz_extra(tmp_path):
  out = _run(
    """
from pathlib import Path
from mgjax.analysis import curves
from mgjax.extras import MissingExtra
from mgjax.run.recording import TensorBoardWriter

for draw in (
  lambda: curves.plot_learning_curves({}, Path("."), "return", "eval return"),
  lambda: curves.plot_runs([Path(".")], Path(".")),
  lambda: TensorBoardWriter(Path("tensorboard")),
):
  try:
    draw()
    print("no error")
  except MissingExtra as e:
    print(f"{type(e).__name__}: {e}")
""",
    tmp_path,
  )
  assert out.returncode == 0, out.stderr
  assert out.stdout.splitlines() == [
    'MissingExtra: plotting needs matplotlib: pip install "mgjax[viz]"',
    'MissingExtra: plotting needs matplotlib: pip install "mgjax[viz]"',
    'MissingExtra: TensorBoard logging needs tensorboardX: pip install "mgjax[tensorboard]"',
  ], out.stdout + out.stderr


@pytest.mark.parametrize(
  "argv, message",
  [
    (["plot", "runs/none"], 'plotting needs matplotlib: pip install "mgjax[viz]"'),
    (
      ["evaluate", "runs/none", "--video", "a.mp4"],
      '--video needs imageio-ffmpeg: pip install "mgjax[viz]"',
    ),
    (
      ["evaluate", "runs/none", "--frame", "a.png"],
      '--frame needs matplotlib: pip install "mgjax[viz]"',
    ),
    (
      ["train", "--env", "pointmass", "--tensorboard", "--no-compile-cache", "--out", "run"],
      '--tensorboard needs tensorboardX: pip install "mgjax[tensorboard]"',
    ),
  ],
)
def test_commands_report_a_missing_extra_in_one_line(argv, message, tmp_path):
  """Before anything else: the run folders given do not exist, and nothing is written."""
  out = _run(f"from mgjax.cli import main\nsys.exit(main({argv!r}))", tmp_path)
  assert out.returncode == 2, out.stderr
  assert out.stderr == f"mgjax {argv[0]}: error: {message}\n"
  assert not list(tmp_path.iterdir())


def test_an_experiment_script_reports_a_missing_extra_in_one_line(tmp_path):
  script = ROOT / "experiments" / "compare_published.py"
  code = "import runpy; sys.argv = ['compare_published.py', 'x', '--out', 'y']\n"
  code += f"runpy.run_path({str(script)!r}, run_name='__main__')"
  out = _run(code, tmp_path)
  assert out.returncode == 2, out.stderr
  assert out.stderr.splitlines() == [
    'compare_published.py: error: plotting needs matplotlib: pip install "mgjax[viz]"'
  ]


def _requirements(text: str) -> list[str]:
  return [x.strip() for x in text.splitlines() if x.strip() and not x.strip().startswith("#")]


def test_setup_cfg_extras_hold_the_optional_modules():
  cfg = configparser.ConfigParser()
  cfg.read(ROOT / "setup.cfg")
  required = _requirements(cfg["options"]["install_requires"])
  extra = {k: _requirements(v) for k, v in cfg["options.extras_require"].items()}
  name = lambda req: req.split(">")[0].split("<")[0].split("=")[0].split("[")[0].strip()
  for module, (package, which) in extras.MODULES.items():
    assert package in map(name, extra[which]), (module, which)
    assert package not in map(name, required), package
  assert set(extra) >= {"viz", "tensorboard", "test"}
  # The test extra is everything: the tests draw, encode videos and log to TensorBoard.
  own = [r for r in extra["test"] if r.startswith("mgjax[")]
  assert len(own) == 1 and set(own[0][6:-1].split(",")) == set(extra) - {"test"}, own
  # requirements.txt: the same requirements, the extras' included.
  own = [r for reqs in extra.values() for r in reqs if not r.startswith("mgjax[")]
  listed = _requirements((ROOT / "requirements.txt").read_text())
  assert sorted(listed) == sorted(required + own)


def test_require_imports_an_installed_module_and_names_a_missing_one(monkeypatch):
  assert extras.require("matplotlib", "plotting").__name__ == "matplotlib"
  monkeypatch.setitem(sys.modules, "tensorboardX", None)
  with pytest.raises(ImportError) as missing:
    extras.require("tensorboardX", "logging")
  assert str(missing.value) == 'logging needs tensorboardX: pip install "mgjax[tensorboard]"'
  assert missing.value.name == "tensorboardX"
