"""Running experiments: placement and sharding of runs over devices, sweeps, recording
(metrics.csv, progress, divergence), resume points, the output files, and a trained policy
loaded from them."""
from mgjax.run.experiment import run
from mgjax.run.loading import load_policy
from mgjax.run.outputs import OutputError, prepare_out_dir, restore_checkpoint
from mgjax.run.placement import LayoutError, check_layout, make_mesh
from mgjax.run.recording import Divergence
from mgjax.run.resume import ResumeError
from mgjax.run.sweep import check_sweep, setting_name, sweep_settings

__all__ = ["Divergence", "LayoutError", "OutputError", "ResumeError", "check_layout",
           "check_sweep", "load_policy", "make_mesh", "prepare_out_dir", "restore_checkpoint", "run",
           "setting_name", "sweep_settings"]
