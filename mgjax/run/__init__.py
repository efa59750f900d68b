"""Running experiments: placement and sharding of runs over devices, sweeps, the memory
check, recording (metrics.csv, progress, divergence), resume points, the output files, a
trained policy loaded from them, and what the command lines share (`cli`, the compilation
cache). The benchmark suites and the accelerator check live beside the scripts, in
experiments/lab/."""

from mgjax.run.experiment import run
from mgjax.run.loading import load_policy
from mgjax.run.memory import MemoryCheckError
from mgjax.run.outputs import OutputError, prepare_out_dir, restore_checkpoint
from mgjax.run.placement import LayoutError, check_layout, make_mesh
from mgjax.run.recording import Divergence
from mgjax.run.resume import ResumeError
from mgjax.run.sweep import check_sweep, setting_name, sweep_settings

__all__ = [
  "Divergence",
  "LayoutError",
  "MemoryCheckError",
  "OutputError",
  "ResumeError",
  "check_layout",
  "check_sweep",
  "load_policy",
  "make_mesh",
  "prepare_out_dir",
  "restore_checkpoint",
  "run",
  "setting_name",
  "sweep_settings",
]
