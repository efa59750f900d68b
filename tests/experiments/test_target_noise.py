"""Tests for lab.target_noise and `experiments/gradient_noise.py --snapshots`: the
target's noise under each advantage convention, on one tiny point-mass `mle` snapshot."""

import json
import sys

import jax
import numpy as np
import pytest
from inprocess import run_main
from paths import ROOT
from test_probe import TINY

import mgjax

sys.path.insert(0, str(ROOT / "experiments"))
from lab import probe, target_noise  # noqa: E402

SCRIPT = ROOT / "experiments" / "gradient_noise.py"


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory):
  trainer = mgjax.make_trainer(TINY)
  state, _ = jax.jit(trainer.chunk)(jax.jit(trainer.init)(jax.random.key(0)))
  folder = tmp_path_factory.mktemp("snap") / "chunks=1"
  probe.save_snapshot(folder, TINY, state, {"chunks": 1, "seed": 0})
  return trainer, state, folder


def test_noise_stats_of_known_noise():
  # g_i = g + noise with |g|² = 1 and E|noise|² = 4: ρ = 0.2; a half's mean of 200 rows has
  # noise 4/200, so two halves agree at 1 / (1 + 0.02).
  rng = np.random.default_rng(0)
  g = np.zeros(400)
  g[0] = 1.0
  s = target_noise.noise_stats(g + 0.1 * rng.standard_normal((400, 400)))
  assert s["rho"] == pytest.approx(0.2, abs=0.01)
  assert s["split_half"] == pytest.approx(1 / 1.02, abs=0.01)


def test_conventions_and_the_real_critic(snapshot):
  trainer, state, _ = snapshot
  critic = target_noise.CriticFit(steps=40, batches=4, learning_rate=1e-3, refresh=20)
  out = target_noise.measure_snapshot(trainer.setup, state, jax.random.key(1), 6, critic)
  names = [p + c for p in ("", "critic+") for c in target_noise.CONVENTIONS]
  assert [n for n in out if n != "critic"] == names
  for n in names:
    assert -1.0 <= out[n]["rho"] <= 1.0 and np.isfinite(out[n]["split_half"])
  # Centring removes the advantages' mean from g_R: another gradient than the raw one.
  assert out["centred"]["norm"] != pytest.approx(out["raw"]["norm"])
  # The critic fitted on real returns explains them better than the snapshot's.
  assert out["critic+raw"]["value_explained_variance"] > out["raw"]["value_explained_variance"]
  assert out["critic"]["steps"] == 40 and np.isfinite(out["critic"]["final_value_loss"])


def test_command_writes_the_conventions_json(snapshot, tmp_path):
  _, _, folder = snapshot
  out = tmp_path / "conventions.json"
  r = run_main(SCRIPT, "--snapshots", folder, "--batches", "4", "--out", out)
  assert r.returncode == 0, r.stderr
  (point,) = json.loads(out.read_text())
  assert point["env"] == "pointmass" and point["chunks"] == 1 and "critic" not in point
  assert "| pointmass | 0 |" in r.stdout and "normalised" in r.stdout
  bad = run_main(SCRIPT, "--snapshots", tmp_path / "none*")
  assert bad.returncode == 2 and "no snapshot folder" in bad.stderr
