"""Dynamics-model fitting: the NLL losses, maximum likelihood on a buffer, MBPO's ensemble
with early stopping and elites, and the model objectives (`ModelObjective`: `nll_objective`,
`mg_objective`) that one `fit` step runs."""

from mgjax.models.ensemble import EnsembleFit, fit_ensemble, member_minibatches
from mgjax.models.fitting import (
  MGObjectiveState,
  ModelObjective,
  combine_model_grads,
  fit,
  fit_mle,
  mg_objective,
  nll_objective,
)
from mgjax.models.nll import (
  ensemble_nll_loss,
  log_std_bound_penalty,
  member_nll,
  model_nll,
  nll_loss,
)

__all__ = [
  "EnsembleFit",
  "MGObjectiveState",
  "ModelObjective",
  "combine_model_grads",
  "ensemble_nll_loss",
  "fit_ensemble",
  "fit",
  "fit_mle",
  "log_std_bound_penalty",
  "member_minibatches",
  "member_nll",
  "mg_objective",
  "model_nll",
  "nll_loss",
  "nll_objective",
]
