"""Analyses that sit on top of the algorithms and the runner: `curves`, the learning and
alignment curves, tables and headline figures of metrics.csv files (`mgjax plot`,
summarize.py, ablations.py), and `published`, published learning curves read onto mgjax's
evaluation grid (compare_published.py). The research probes and timings live beside the
scripts, in experiments/lab/."""
