"""Dynamics-model fitting: the NLL losses, maximum likelihood on a buffer, MBPO's ensemble
with early stopping and elites, and the mix of MG and NLL gradients."""

from mgjax.models.ensemble import EnsembleFit, fit_ensemble, member_minibatches
from mgjax.models.fitting import combine_model_grads, fit_mle, fit_model_mg
from mgjax.models.nll import (
  ensemble_nll_loss,
  log_std_bound_penalty,
  member_nll,
  model_nll,
  nll_loss,
)

__all__ = [
  "EnsembleFit",
  "combine_model_grads",
  "ensemble_nll_loss",
  "fit_ensemble",
  "fit_mle",
  "fit_model_mg",
  "log_std_bound_penalty",
  "member_minibatches",
  "member_nll",
  "model_nll",
  "nll_loss",
]
