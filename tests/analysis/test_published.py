"""mgjax.analysis.published (erl_lib's CSVs as metrics.csv rows) on hand-written files, the
repo's stored copies, and compare_published.py reading them."""

import csv
from pathlib import Path

import numpy as np
import pytest
from inprocess import run_main
from paths import ROOT

from mgjax.analysis import curves, published
from mgjax.stats import iqm

STORED = ROOT / "results" / "published" / published.ERL_LIB
SCRIPT = ROOT / "experiments" / "compare_published.py"


def write_erl(folder: Path, algo: str, env: str, rows, header=("step", "time", "reward", "seed")):
  """folder/algo/env.csv in erl_lib's layout; rows are tuples in `header`'s order."""
  (folder / algo).mkdir(parents=True, exist_ok=True)
  with open(folder / algo / f"{env}.csv", "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(header)
    w.writerows(rows)


def linear_rows(seeds, steps, offset=0.0, seed_fmt=str):
  """reward = offset + 10·seed + step/1000 at each step, erl_lib's columns (time made up)."""
  return [
    (float(s), 0.5 * s / 1000, offset + 10 * d + s / 1000, seed_fmt(d))
    for d in seeds
    for s in steps
  ]


def test_read_erl_lib_names_rounds_and_orders(tmp_path):
  # MBPO's files store fractional steps and float seeds; rows come out per seed, by step.
  rows = [(5911.33, 1.0, 5.0, "1.0"), (0.0, 0.0, 1.0, "1.0"), (6896.55, 2.0, 7.0, "1.0")]
  rows += [(0.0, 0.0, 2.0, "0.0"), (5911.33, 1.0, 6.0, "0.0")]
  write_erl(tmp_path, "mbpo", "HalfCheetah", rows)
  got = published.read_erl_lib(tmp_path / "mbpo" / "HalfCheetah.csv")
  assert [(r["seed"], r["env_steps"], r["eval_return"]) for r in got] == [
    (0, 0, 2.0),
    (0, 5911, 6.0),
    (1, 0, 1.0),
    (1, 5911, 5.0),
    (1, 6897, 7.0),
  ]
  assert {(r["algo"], r["env"]) for r in got} == {("mbpo:erl_lib", "halfcheetah")}
  # DHMBPO's folder is "esvg", with an extra column, which is ignored.
  write_erl(
    tmp_path,
    "esvg",
    "Ant",
    [(0.0, 0.1, 3.0, 2, "")],
    ("step", "time", "reward", "seed", "critic_loss"),
  )
  (row,) = published.read_erl_lib(tmp_path / "esvg" / "Ant.csv")
  assert row == {
    "algo": "dhmbpo:erl_lib",
    "env": "ant",
    "seed": 2,
    "env_steps": 0,
    "eval_return": 3.0,
  }


def test_read_erl_lib_until_keeps_the_evaluation_that_brackets_it(tmp_path):
  write_erl(
    tmp_path, "sac_long", "Hopper", linear_rows([0, 1], [0, 5000, 100_000, 200_000, 300_000])
  )
  path = tmp_path / "sac_long" / "Hopper.csv"
  steps = lambda until: sorted({r["env_steps"] for r in published.read_erl_lib(path, until)})
  assert steps(None) == [0, 5000, 100_000, 200_000, 300_000]
  assert steps(40_000) == [0, 5000, 100_000]  # 40k lies between 5k and 100k
  assert steps(100_000) == [0, 5000, 100_000]  # an evaluation at 100k itself
  assert steps(100_001) == [0, 5000, 100_000, 200_000]
  assert steps(10**6) == [0, 5000, 100_000, 200_000, 300_000]  # past the end: all of it


def test_read_erl_lib_refuses_what_it_cannot_read(tmp_path):
  write_erl(tmp_path, "td3", "Hopper", linear_rows([0], [0]))
  with pytest.raises(ValueError, match="unknown erl_lib algorithm folder 'td3'"):
    published.read_erl_lib(tmp_path / "td3" / "Hopper.csv")
  write_erl(tmp_path, "sac", "Humanoid", linear_rows([0], [0]))
  with pytest.raises(ValueError, match="unknown erl_lib env 'Humanoid'"):
    published.read_erl_lib(tmp_path / "sac" / "Humanoid.csv")
  write_erl(tmp_path, "sac", "Hopper", [(0.0, 1.0, 0)], ("step", "time", "seed"))
  with pytest.raises(ValueError, match="no column reward"):
    published.read_erl_lib(tmp_path / "sac" / "Hopper.csv")
  write_erl(tmp_path, "mbpo", "Hopper", [(6019.0, 0.0, 1.0, 0), (6019.2, 0.0, 2.0, 0)])
  with pytest.raises(ValueError, match="seed 0 evaluated twice at step 6019"):
    published.read_erl_lib(tmp_path / "mbpo" / "Hopper.csv")


def test_rows_skip_unknown_files_and_a_missing_folder(tmp_path):
  assert published.rows(tmp_path) == []  # no erl_lib/ at all
  erl = tmp_path / published.ERL_LIB
  write_erl(erl, "sac", "Walker2d", linear_rows([0, 1], [0, 10_000]))
  write_erl(erl, "macura", "Walker2d", linear_rows([0], [0]))  # not read
  got = published.rows(tmp_path)
  assert {(r["algo"], r["env"], r["seed"]) for r in got} == {
    ("sac:erl_lib", "walker2d", 0),
    ("sac:erl_lib", "walker2d", 1),
  }


def test_erl_lib_rows_are_compared_at_other_grids(tmp_path):
  # Ours: return = seed + steps/1000 every 5k to 40k (4 seeds). erl_lib's: 10·seed + step/1000
  # every 10k (3 seeds), so 25k interpolates between 20k and 30k to 25 + 10·seed.
  run = tmp_path / "sac-hopper"
  run.mkdir()
  with open(run / "metrics.csv", "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["algo", "env", "seed", "iteration", "env_steps", "eval_return"])
    for seed in range(4):
      for i, steps in enumerate(range(5000, 40_001, 5000)):
        w.writerow(["sac", "hopper", seed, i, steps, seed + steps / 1000])
  write_erl(
    tmp_path / "pub" / "erl_lib", "sac", "Hopper", linear_rows(range(3), range(0, 50_001, 10_000))
  )
  data, _ = curves.load_runs([run], extra_rows=published.rows(tmp_path / "pub"))
  lines = {(r["algo"], r["milestone"]): r for r in curves.compare_at(data, "sac", [25_000, 40_000])}
  theirs = lines[("sac:erl_lib", 25_000)]
  assert (theirs["from_env_steps"], theirs["to_env_steps"], theirs["seeds"]) == (20_000, 30_000, 3)
  assert theirs["iqm"] == pytest.approx(iqm(np.array([25.0, 35.0, 45.0])))
  assert theirs["reference_minus"] == pytest.approx(iqm(np.arange(4) + 25.0) - theirs["iqm"])
  assert lines[("sac:erl_lib", 40_000)]["from_env_steps"] == 40_000


def test_compare_published_reads_an_erl_lib_folder_alone_and_refuses_an_empty_one(tmp_path):
  run = tmp_path / "sac-hopper"
  run.mkdir()
  with open(run / "metrics.csv", "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["algo", "env", "seed", "iteration", "env_steps", "eval_return"])
    for seed in range(3):
      w.writerows(
        [["sac", "hopper", seed, 0, 20_000, 100], ["sac", "hopper", seed, 1, 30_000, 300]]
      )
  pub = tmp_path / "pub"
  write_erl(pub / "erl_lib", "sac", "Hopper", linear_rows([0, 1], [0, 20_000, 40_000, 500_000]))
  proc = run_main(SCRIPT, run, "--published", pub, "--at", "25000", "--out", tmp_path / "cmp")
  assert proc.returncode == 0, proc.stderr
  md = (tmp_path / "cmp" / "table.md").read_text()
  assert "| hopper | sac | 3 | 200 [200, 200] (20,000–30,000) |" in md  # halfway, 100 to 300
  # seeds 0 and 1 at 25k: 25 and 35 between their 20k and 40k evaluations
  assert "| hopper | sac:erl_lib | 2 | 30 [25, 35] (20,000–40,000) |" in md
  assert "| hopper | sac:simbav2 |" not in md  # the repo's curves are not read from elsewhere
  (tmp_path / "empty").mkdir()
  proc = run_main(SCRIPT, run, "--published", tmp_path / "empty", "--out", tmp_path / "x")
  assert proc.returncode == 2
  assert "no metrics.csv or erl_lib/ curves there" in proc.stderr


def test_the_stored_erl_lib_curves_are_complete_and_readable():
  # Every (algo, env) of results/published/erl_lib reads, with one evaluation grid for all
  # of its seeds (else `curves.group` would keep only their common steps) reaching 100k env
  # steps, and the licence that allows the copy is beside them.
  assert len(published.erl_lib_files(STORED)) == len(published.ERL_LIB_ALGOS) * len(
    published.ERL_LIB_ENVS
  )
  for path in published.erl_lib_files(STORED):
    rows = published.read_erl_lib(path)
    grids = {}
    for r in rows:
      grids.setdefault(r["seed"], []).append(r["env_steps"])
    assert len(grids) >= 5, path
    assert len({tuple(g) for g in grids.values()}) == 1, path
    assert max(next(iter(grids.values()))) >= 100_000, path
  assert "MIT License" in (STORED / "LICENSE").read_text()
