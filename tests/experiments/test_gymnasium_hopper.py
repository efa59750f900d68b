"""experiments/gymnasium_hopper.py: brax's Hopper on Gymnasium's model, registered from
outside the package as `hopper_gymnasium`, with hopper's presets (nothing is compiled)."""

import sys

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
from paths import ROOT

sys.path.insert(0, str(ROOT / "experiments"))
import gymnasium_hopper  # noqa: E402

from mgjax.algorithms import make_config, preset  # noqa: E402
from mgjax.envs import make_env  # noqa: E402


def test_the_env_is_brax_hopper_on_gymnasiums_model():
  info = make_env(gymnasium_hopper.NAME)
  hopper = make_env("hopper")
  assert (info.obs_size, info.action_size, info.episode_length) == (11, 3, 1000)
  model, brax_model = info.env.sys.mj_model, hopper.env.sys.mj_model
  # Gymnasium's: RK4, 100 solver iterations, every geom against the floor; brax's: Euler, 4,
  # and only the foot.
  assert model.opt.integrator == mujoco.mjtIntegrator.mjINT_RK4
  assert brax_model.opt.integrator == mujoco.mjtIntegrator.mjINT_EULER
  assert (model.opt.iterations, brax_model.opt.iterations) == (100, 4)
  assert np.all(model.geom_contype == 1) and np.all(model.geom_conaffinity == 1)
  assert np.sum(brax_model.geom_contype) < brax_model.ngeom
  assert (model.opt.timestep, info.env.dt) == (0.002, hopper.env.dt)
  with jax.numpy_rank_promotion("allow"):  # brax's and MJX's own code broadcasts freely
    reset = jax.eval_shape(info.env.reset, jax.random.key(0))
  assert reset.obs.shape == (11,)


def test_presets_and_termination_are_hoppers():
  for algo in ("sac", "mbpo", "mg-sac"):
    ours = make_config(algo=algo, env=gymnasium_hopper.NAME)
    theirs = make_config(algo=algo, env="hopper")
    assert ours.target_entropy == theirs.target_entropy == -1.0
    assert ours.branch_schedule == theirs.branch_schedule
  assert preset("sac", gymnasium_hopper.NAME)["target_entropy"] == -1.0
  done = make_env(gymnasium_hopper.NAME).termination_fn
  upright = jnp.zeros(11).at[0].set(1.25)
  assert float(done(upright)) == 0.0
  assert float(done(upright.at[0].set(0.6))) == 1.0  # z below 0.7
  assert float(done(upright.at[1].set(0.3))) == 1.0  # torso angle past 0.2
