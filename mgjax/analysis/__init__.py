"""Analyses that sit on top of the algorithms and the runner: `probe`, the alignment probe
(does a model objective raise the real alignment it optimises?)."""
