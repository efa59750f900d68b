"""mgjax.analysis.curves (experiments/plot.py's figures and tables) on run folders of
hand-written metrics.csv files, and plot.py's command line."""

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from inprocess import run_main
from paths import ROOT

from mgjax import algorithms, stats
from mgjax.analysis import curves
from mgjax.stats import iqm


def write_run(
  folder: Path, algo: str, seeds: int, last: int, offset: float, env: str = "hopper"
) -> None:
  """A run folder's metrics.csv: eval return = offset + seed + env_steps / 1000."""
  folder.mkdir(parents=True)
  with open(folder / "metrics.csv", "w", newline="") as f:
    w = csv.DictWriter(
      f, ["algo", "env", "seed", "iteration", "env_steps", "eval_return", "model_grad_cosine"]
    )
    w.writeheader()
    for seed in range(seeds):
      for i, steps in enumerate(range(5000, last + 1, 5000)):
        w.writerow(
          {
            "algo": algo,
            "env": env,
            "seed": seed,
            "iteration": i,
            "env_steps": steps,
            "eval_return": offset + seed + steps / 1000,
            "model_grad_cosine": 0.1,
          }
        )
  (folder / "summary.json").write_text("{}")


def test_namesake_run_folders_stay_apart_and_the_last_evaluation_is_tabled(tmp_path):
  # Two runs of mbpo on hopper in folders of the same name: 5 seeds to 40k and 1 seed to
  # 100k. Each keeps its own seeds and steps, labelled by as much of its path as it takes.
  write_run(tmp_path / "cpu-sac" / "mbpo-hopper", "mbpo", 5, 40_000, 0.0)
  write_run(tmp_path / "cpu-1seed" / "mbpo-hopper", "mbpo", 1, 100_000, 1000.0)
  write_run(tmp_path / "cpu" / "mg-hopper", "mg", 2, 100_000, 0.0)
  data, single = curves.load_runs(
    [
      tmp_path / "cpu-sac" / "mbpo-hopper",
      tmp_path / "cpu-1seed" / "mbpo-hopper",
      tmp_path / "cpu" / "mg-hopper",
    ]
  )
  assert single
  assert set(data) == {
    ("hopper", "mbpo:cpu-sac/mbpo-hopper"),
    ("hopper", "mbpo:cpu-1seed/mbpo-hopper"),
    ("hopper", "mg"),
  }
  five = data[("hopper", "mbpo:cpu-sac/mbpo-hopper")]
  assert five["return"].shape == (5, 8) and five["steps"][-1] == 40_000
  np.testing.assert_array_equal(five["return"][:, -1], 40.0 + np.arange(5))
  one = data[("hopper", "mbpo:cpu-1seed/mbpo-hopper")]
  assert one["return"].shape == (1, 20) and one["return"][0, -1] == 1100.0

  curves.table(data, tmp_path)
  with open(tmp_path / "table.csv", newline="") as f:
    marks = {(r["algo"], int(r["milestone"])): int(r["env_steps"]) for r in csv.DictReader(f)}
  # The 40k run's last evaluation is a column of its own; a 100k run's is the 100k milestone.
  assert {m for a, m in marks if a == "mbpo:cpu-sac/mbpo-hopper"} == {25_000, 40_000}
  assert {m for a, m in marks if a == "mg"} == {25_000, 50_000, 100_000}
  assert "| hopper | mbpo:cpu-sac/mbpo-hopper | 27 [" in (tmp_path / "table.md").read_text()


def test_folder_names_use_the_fewest_trailing_parts(tmp_path):
  files = [tmp_path / "a" / "run" / "metrics.csv", tmp_path / "b" / "run" / "metrics.csv"]
  assert list(curves.folder_names(files).values()) == ["a/run", "b/run"]
  files = [tmp_path / "x" / "lr=1e-3" / "metrics.csv", tmp_path / "x" / "lr=1e-4" / "metrics.csv"]
  assert list(curves.folder_names(files).values()) == ["lr=1e-3", "lr=1e-4"]


def test_labelled_sac_runs_get_their_alignment_figure(tmp_path):
  for parent in ("cpu-sac", "cpu-1seed"):
    write_run(tmp_path / parent / "mbpo-hopper", "mbpo", 2, 10_000, 0.0)
  out = tmp_path / "plots"
  out.mkdir()
  written = curves.plot_runs(
    [tmp_path / "cpu-sac" / "mbpo-hopper", tmp_path / "cpu-1seed" / "mbpo-hopper"], out
  )
  assert "alignment_sac.png" in written and "alignment.png" not in written
  assert (out / "alignment_sac.png").stat().st_size > 0
  assert not (out / "alignment.png").exists()


def test_table_columns_at_chosen_env_steps(tmp_path):
  # Milestones (plot.py's --at) replace 25k/50k/100k; a run's last evaluation still gets a
  # column of its own.
  write_run(tmp_path / "a" / "mbpo-hopper", "mbpo", 3, 40_000, 0.0)
  write_run(tmp_path / "b" / "mbpo-hopper", "mbpo", 3, 15_000, 100.0)
  out = tmp_path / "plots"
  out.mkdir()
  curves.plot_runs([tmp_path / f / "mbpo-hopper" for f in ("a", "b")], out, [10_000, 15_000])
  with open(out / "table.csv", newline="") as f:
    rows = {(r["algo"], int(r["milestone"])): float(r["iqm"]) for r in csv.DictReader(f)}
  assert rows == {
    ("mbpo:a/mbpo-hopper", 10_000): 11.0,
    ("mbpo:a/mbpo-hopper", 15_000): 16.0,
    ("mbpo:a/mbpo-hopper", 40_000): 41.0,
    ("mbpo:b/mbpo-hopper", 10_000): 111.0,
    ("mbpo:b/mbpo-hopper", 15_000): 116.0,
  }
  assert (out / "table.md").read_text().splitlines()[0] == "| env | algo | 10k | 15k | 40k |"


def _plot_cli(*args):
  return subprocess.run(
    [sys.executable, "experiments/plot.py", *map(str, args)],
    cwd=ROOT,
    capture_output=True,
    text=True,
    env={**os.environ, "PYTHONPATH": str(ROOT)},
  )


def test_plot_cli_draws_a_run_and_refuses_bad_milestones_in_one_line(tmp_path):
  write_run(tmp_path / "mg-hopper", "mg", 2, 10_000, 0.0)
  proc = _plot_cli(tmp_path / "mg-hopper", "--at", "5000")
  assert proc.returncode == 0, proc.stderr
  assert (tmp_path / "mg-hopper" / "metrics.png").stat().st_size > 0  # a run's folder
  assert (tmp_path / "mg-hopper" / "table.md").read_text().splitlines()[0] == (
    "| env | algo | 5k | 10k |"
  )
  for bad in ("0", "1e4"):  # main() in this process (tests/inprocess.py)
    proc = run_main(ROOT / "experiments" / "plot.py", tmp_path / "mg-hopper", "--at", bad)
    assert proc.returncode == 2
    assert proc.stderr == (f"plot.py: error: at={bad!r}: must be a positive number of env steps\n")


def test_registered_algorithms_keep_their_colours_and_other_labels_take_free_ones():
  labels = ["mg", "mle", "mbpo:a", "mbpo:b"]
  assert [curves.color(a, labels) for a in ("mg", "mle")] == [
    algorithms.get_algorithm("mg").spec.color,
    algorithms.get_algorithm("mle").spec.color,
  ]
  free = [curves.color(a, labels) for a in ("mbpo:a", "mbpo:b")]
  assert len(set(free)) == 2 and not set(free) & {curves.color(a, labels) for a in ("mg", "mle")}


def test_columns_of_other_algorithms_are_kept(tmp_path):
  # A metric no registered algorithm reports (an algorithm registered in another program)
  # is read with the rest.
  rows = [
    {
      "algo": "noise",
      "env": "pointmass",
      "seed": "0",
      "env_steps": str(t),
      "eval_return": "1.0",
      "action_std": "0.5",
    }
    for t in (100, 200)
  ]
  data = curves.group(rows)
  np.testing.assert_array_equal(data[("pointmass", "noise")]["action_std"], [[0.5, 0.5]])
  assert np.isnan(data[("pointmass", "noise")]["model_nll"]).all()
  assert curves.envs_algos(data) == (["pointmass"], ["noise"])


def test_aggregate_takes_only_the_algorithms_run_on_every_env(tmp_path):
  # mg on hopper and walker2d, sac on hopper only: sac's hopper runs would otherwise be
  # aggregated against mg's average over two envs. They score higher than mg's, and still
  # do not set hopper's normaliser: a cell left out of the aggregate changes none of it.
  write_run(tmp_path / "mg-hopper", "mg", 3, 20_000, 100.0)
  write_run(tmp_path / "mg-walker2d", "mg", 3, 20_000, 200.0, env="walker2d")
  write_run(tmp_path / "sac-hopper", "sac", 3, 20_000, 1000.0)
  data, _ = curves.load_runs([tmp_path / n for n in ("mg-hopper", "mg-walker2d", "sac-hopper")])
  scores = curves.normalised_scores(data)
  assert list(scores) == ["mg"]
  steps, per_eval = scores["mg"]
  np.testing.assert_array_equal(steps, [5000, 10000, 15000, 20000])
  # Each env is normalised by its best aggregated final IQM, mg's own on both: the final
  # returns 120-122 on hopper and 220-222 on walker2d over their IQM.
  final = [np.array([120.0, 121.0, 122.0]), np.array([220.0, 221.0, 222.0])]
  np.testing.assert_allclose(per_eval[-1], [f / iqm(f) for f in final])


def test_aggregate_is_empty_when_no_algorithm_ran_on_every_env(tmp_path):
  write_run(tmp_path / "mg-hopper", "mg", 3, 20_000, 100.0)
  write_run(tmp_path / "sac-walker2d", "sac", 3, 20_000, 200.0, env="walker2d")
  data, _ = curves.load_runs([tmp_path / "mg-hopper", tmp_path / "sac-walker2d"])
  assert curves.normalised_scores(data) == {}


def test_headline_gives_ratios_and_the_steps_to_reach_mles_final_return(tmp_path):
  # eval return = offset + seed + env_steps / 1000, 4 seeds to 40k: mle's final IQM is
  # 41.5; mg (offset 10) first reaches it at 30k (41.5), ppo (offset -20) never.
  suite = tmp_path / "suite"
  lines = []
  for algo, offset in (("mle", 0.0), ("mg", 10.0), ("ppo", -20.0)):
    write_run(tmp_path / algo, algo, 4, 40_000, offset)
    text = (tmp_path / algo / "metrics.csv").read_text().splitlines()
    lines += text if not lines else text[1:]
  suite.mkdir()
  (suite / "metrics.csv").write_text("\n".join(lines) + "\n")
  curves.plot_runs([suite], suite)
  out = curves.headline(suite)
  assert out["steps_to_reach_mle_final"] == {
    "hopper": {
      "target": 41.5,
      "target_steps": 40_000,
      "steps": {"mg": 30_000, "mle": 40_000, "ppo": None},
    }
  }
  # The last quarter of mle's 40k: the evaluations at 30k, 35k and 40k, per seed offset +
  # seed + 35; over the seeds 0-3 the IQM is offset + 36.5.
  late = out["late_return_vs_mle"]["hopper"]
  assert late["from_env_steps"] == 30_000
  for algo, offset in (("mle", 0.0), ("mg", 10.0), ("ppo", -20.0)):
    got = late["algos"][algo]
    np.testing.assert_allclose(got["seeds"], [offset + s + 35.0 for s in range(4)])
    assert np.isclose(got["iqm"], offset + 36.5) and got["ci"][0] <= got["iqm"] <= got["ci"][1]
    if algo == "mle":
      assert "minus_reference" not in got
      continue
    assert np.isclose(got["minus_reference"], offset)
    lo, hi = got["minus_reference_ci"]
    assert lo <= offset <= hi and hi - lo <= 4.0  # the seeds span 3
  ratios = out["ratios_at_last_milestone"]["hopper"]
  assert np.isclose(ratios["mg_over_mle"], 51.5 / 41.5)
  assert np.isclose(ratios["mg_over_ppo"], 51.5 / 21.5)


def test_bootstrap_difference_ci_matches_the_normal_approximation():
  # Δ = mean(a) − mean(b) of independent groups: the bootstrap's Δ* has variance
  # var(a)/n_a + var(b)/n_b (population variances), so for large groups its 95% interval is
  # Δ ± 1.96 of that standard deviation.
  rng = np.random.default_rng(1)
  a, b = rng.normal(3.0, 2.0, 400), rng.normal(1.0, 1.0, 300)
  point, lo, hi = stats.bootstrap_difference_ci(a, b, statistic=np.mean, reps=4000)
  assert point == pytest.approx(a.mean() - b.mean())
  sd = np.sqrt(a.var() / a.size + b.var() / b.size)
  assert (hi - lo) / 2 == pytest.approx(1.96 * sd, rel=0.08)
  assert (lo + hi) / 2 == pytest.approx(point, abs=0.1 * sd)
  assert stats.bootstrap_difference_ci(np.full(5, 5.0), np.full(4, 2.0)) == (3.0, 3.0, 3.0)


def test_late_returns_take_the_window_that_ends_at_the_references_last_evaluation():
  # mle to 40k, mg to 60k: mg's late mean covers 30k-40k only, as mle's does.
  steps = lambda last: np.arange(10_000, last + 1, 10_000)
  data = {
    ("hopper", "mle"): {"steps": steps(40_000), "return": np.tile(steps(40_000) / 1000, (3, 1))},
    ("hopper", "mg"): {"steps": steps(60_000), "return": np.tile(steps(60_000) / 100, (3, 1))},
  }
  late = curves.late_returns(data)["hopper"]
  assert late["from_env_steps"] == 30_000
  np.testing.assert_allclose(late["algos"]["mle"]["seeds"], [35.0] * 3)
  np.testing.assert_allclose(late["algos"]["mg"]["seeds"], [350.0] * 3)
  assert late["algos"]["mg"]["minus_reference"] == pytest.approx(315.0)
  assert late["algos"]["mg"]["minus_reference_ci"] == pytest.approx([315.0, 315.0])


def test_interpolate_is_linear_between_the_bracketing_evaluations_and_exact_on_them():
  steps = np.array([0, 16_666, 33_332])
  values = np.array([[0.0, 100.0, 400.0], [10.0, 10.0, 10.0]])
  # seed 0 at 25k: 100 + 300 (25000 − 16666) / 16666
  expected = 100.0 + 300.0 * (25_000 - 16_666) / 16_666
  np.testing.assert_allclose(curves.interpolate(steps, values, 25_000), [expected, 10.0])
  np.testing.assert_array_equal(curves.interpolate(steps, values, 16_666), [100.0, 10.0])
  assert curves.interpolate(steps, values, 40_000) is None
  assert curves.interpolate(steps[1:], values[:, 1:], 10_000) is None


def test_compare_at_puts_runs_on_other_grids_beside_the_reference(tmp_path):
  # The reference: return = seed + steps/1000 at every 5k. The "published" run is evaluated
  # every 20k, return = 100 + steps/1000 for every seed, and so linear: at 25k it is 125
  # between its 20k and 40k evaluations, and sac − it = IQM(25, 26, 27, 28) − 125. Neither
  # reaches 50k, so that column is empty.
  write_run(tmp_path / "sac-hopper", "sac", 4, 40_000, 0.0)
  published = tmp_path / "published"
  published.mkdir()
  with open(published / "metrics.csv", "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["algo", "env", "seed", "env_steps", "eval_return"])
    for seed in range(6):
      for steps in (0, 20_000, 40_000):
        w.writerow(["sac:paper", "hopper", seed, steps, 100 + steps / 1000])
  data, _ = curves.load_runs([tmp_path / "sac-hopper", published])
  lines = curves.compare_at(data, "sac", [25_000, 40_000, 50_000])
  got = {(r["algo"], r["milestone"]): r for r in lines}
  assert set(got) == {(a, m) for a in ("sac", "sac:paper") for m in (25_000, 40_000)}
  ours = got[("sac", 25_000)]
  assert (ours["from_env_steps"], ours["to_env_steps"], ours["seeds"]) == (25_000, 25_000, 4)
  assert ours["iqm"] == pytest.approx(iqm(np.arange(4) + 25.0))
  assert "reference_minus" not in ours
  theirs = got[("sac:paper", 25_000)]
  assert (theirs["from_env_steps"], theirs["to_env_steps"]) == (20_000, 40_000)
  assert (theirs["iqm"], theirs["ci_low"], theirs["ci_high"]) == pytest.approx((125.0,) * 3)
  assert theirs["reference_minus"] == pytest.approx(iqm(np.arange(4) + 25.0) - 125.0)
  assert got[("sac:paper", 40_000)]["reference_minus"] == pytest.approx(
    iqm(np.arange(4) + 40.0) - 140.0
  )


def test_compare_published_cli_writes_its_tables_and_refuses_a_missing_reference(tmp_path):
  write_run(tmp_path / "sac-hopper", "sac", 3, 40_000, 0.0)
  script = ROOT / "experiments" / "compare_published.py"
  proc = run_main(script, tmp_path / "sac-hopper", "--at", "25000", "--out", tmp_path / "cmp")
  assert proc.returncode == 0, proc.stderr
  md = (tmp_path / "cmp" / "table.md").read_text()
  assert md.splitlines()[0] == "| env | runs | seeds | 25k |"
  assert "| hopper | sac | 3 | 26 [25, 27] |" in md  # return = seed + 25 at 25k
  assert "| hopper | sac:simbav2 | 10 |" in md  # the repo's published curves by default
  assert (tmp_path / "cmp" / "learning_curves.png").stat().st_size > 0
  proc = run_main(script, tmp_path / "sac-hopper", "--reference", "mbpo", "--out", tmp_path / "x")
  assert proc.returncode == 2
  assert proc.stderr.startswith("compare_published.py: error: reference='mbpo': no runs of it")
  assert len(proc.stderr.splitlines()) == 1
