"""Analyses that sit on top of the algorithms and the runner: `curves`, the learning and
alignment curves, tables and headline figures of metrics.csv files (plot.py, summarize.py,
ablations.py), and `probe`, the alignment probe (does a model objective raise the real
alignment it optimises?)."""
