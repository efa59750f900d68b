"""Learning curves, alignment curves and tables from metrics.csv files: runs grouped by
(env, algo), IQM with stratified-bootstrap 95% CIs, normalised aggregates, the milestone
table and the headline figures (`experiments/plot.py`, `summarize.py`, `ablations.py`).

Every name of the three modules that do the work, in one place:

- `mgjax.analysis.runs`: run and suite folders read and grouped into {(env, algo): arrays}
  (`load`, `load_runs`, `group`, `metric_files`, `folder_names`, `envs_algos`);
- `mgjax.analysis.tables`: the statistics (`curve`, `normalised_scores`, `table`,
  `steps_to_reach`, `late_returns`, `interpolate`, `compare_at`, `headline`);
- `mgjax.analysis.figures`: the figures (`plot_runs`, `plot_learning_curves`,
  `plot_aggregate`, `plot_metrics`, `color`, `alignment_labels`), drawn with matplotlib,
  which they import where they draw: importing this module needs no matplotlib.
"""

from mgjax.analysis.figures import (
  ALIGNMENT_FIGURES,
  alignment_labels,
  color,
  plot_aggregate,
  plot_learning_curves,
  plot_metrics,
  plot_runs,
)
from mgjax.analysis.runs import (
  NOT_METRICS,
  envs_algos,
  folder_names,
  group,
  load,
  load_runs,
  metric_files,
)
from mgjax.analysis.tables import (
  MILESTONES,
  compare_at,
  curve,
  headline,
  interpolate,
  late_returns,
  normalised_scores,
  steps_to_reach,
  table,
)

__all__ = [
  "ALIGNMENT_FIGURES",
  "MILESTONES",
  "NOT_METRICS",
  "alignment_labels",
  "color",
  "compare_at",
  "curve",
  "envs_algos",
  "folder_names",
  "group",
  "headline",
  "interpolate",
  "late_returns",
  "load",
  "load_runs",
  "metric_files",
  "normalised_scores",
  "plot_aggregate",
  "plot_learning_curves",
  "plot_metrics",
  "plot_runs",
  "steps_to_reach",
  "table",
]
