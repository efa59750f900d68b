"""Policy learners as update steps: PPO (`mgjax.agents.ppo`) and SAC (`mgjax.agents.sac`)."""
