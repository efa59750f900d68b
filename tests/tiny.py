"""Tiny run configs that several test files share (as make_config fields), so that a change
to one is a change to every test that runs it."""

# mbpo on pointmass: 200 random steps, then 4 evaluation chunks of 2 iterations x 25 env
# steps; both replay buffers, the ensemble and SAC's optimisers (test_resume, test_memory).
MBPO = dict(
  algo="mbpo",
  env="pointmass",
  total_steps=400,
  exploration_steps=200,
  rollout_length=25,
  eval_every=2,
  num_eval_envs=2,
  model_hidden=(32, 32),
  sac_hidden=(32, 32),
  ensemble_size=3,
  elites=2,
  rollout_batch=64,
  updates_per_step=2,
  sac_batch=64,
  model_max_epochs=2,
  model_epoch_steps=5,
  branch_schedule=(0, 1, 1, 3),
)
