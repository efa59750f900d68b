"""Tiny run configs that several test files share (as make_config fields), so that a change
to one is a change to every test that runs it."""

# The PPO family (mg, mle, ppo) on pointmass: 4 envs × 8 steps × 2 iterations per chunk,
# total_steps = 3 chunks (test_mg, test_config; test_regression with real_grad_ema = 0.5).
PPO_FAMILY = dict(
  env="pointmass",
  total_steps=3 * 4 * 8 * 2,
  num_envs=4,
  rollout_length=8,
  eval_every=2,
  num_eval_envs=2,
  policy_hidden=(16,),
  value_hidden=(16,),
  model_hidden=(16,),
  ppo_epochs=1,
  num_minibatches=2,
  buffer_size=128,
  mle_steps=2,
  mle_batch=16,
  mg_steps=1,
  mg_rollouts=8,
  mg_horizon=3,
  model_rollouts=8,
  model_horizon=3,
  model_updates=1,
)

# PPO_FAMILY with one 8 × 32 batch per iteration and 10-step episodes, fitted long enough
# for the model's stages to be tested (test_mg, test_config).
STAGE = dict(
  PPO_FAMILY,
  num_envs=8,
  rollout_length=32,
  total_steps=8 * 32 * 2,
  episode_length=10,
  buffer_size=256,
  mle_steps=300,
  mle_batch=64,
  model_hidden=(32, 32),
)

# ≈ 20k env steps: 16 envs × 32 steps × 5 iterations per chunk, round(20000 / 2560) = 8
# chunks: the end-to-end learning runs (test_mg, test_config).
E2E = dict(
  env="pointmass",
  total_steps=20000,
  num_envs=16,
  rollout_length=32,
  eval_every=5,
  num_eval_envs=8,
  model_hidden=(64, 64),
  mle_steps=20,
  mg_steps=2,
  mg_rollouts=64,
  model_rollouts=128,
  model_updates=2,
)

# An mle run whose buffer holds the probes' batches: 8 envs × 16 steps per batch, 16-row
# MG rollouts of 4 steps (test_probe, test_policy_improvement).
PROBE = dict(
  env="pointmass",
  total_steps=2 * 8 * 16,
  num_envs=8,
  rollout_length=16,
  eval_every=2,
  num_eval_envs=2,
  policy_hidden=(16,),
  value_hidden=(16,),
  model_hidden=(32,),
  ppo_epochs=1,
  num_minibatches=2,
  buffer_size=512,
  mle_steps=20,
  mle_batch=32,
  mg_rollouts=16,
  mg_horizon=4,
  model_rollouts=16,
  model_horizon=4,
  model_updates=1,
)

# The SAC family (mbpo, mg-sac) on pointmass: 100 random steps, then 2 chunks of 2
# iterations × 25 env steps (test_regression).
SAC_FAMILY = dict(
  env="pointmass",
  exploration_steps=100,
  rollout_length=25,
  eval_every=2,
  total_steps=100 + 2 * 2 * 25,
  ensemble_size=3,
  elites=2,
  model_hidden=(16, 16),
  sac_hidden=(16, 16),
  rollout_batch=32,
  updates_per_step=2,
  sac_batch=32,
  model_max_epochs=3,
  model_epoch_steps=4,
  mle_batch=16,
  buffer_size=1000,
  num_eval_envs=2,
  mg_rollouts=8,
  mg_horizon=2,
  mg_steps=2,
)

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

# sac on pointmass: 500 random steps, then 9 chunks of 10 iterations x 50 env steps, one
# update per step; long enough to learn (test_sac_algorithm).
SAC = dict(
  algo="sac",
  env="pointmass",
  exploration_steps=500,
  rollout_length=50,
  eval_every=10,
  sac_hidden=(64, 64),
  sac_batch=128,
  num_eval_envs=8,
  sac_learning_rate=1e-3,
  total_steps=5000,
)
