#!/usr/bin/env bash
# erl_lib's own SAC (github.com/4kubo/erl_lib, the DHMBPO paper's code, PyTorch) on its
# MBHopper-v0 (Gymnasium 0.29.1's Hopper-v4 with erl_lib's termination model), on a CPU, for
# the comparison in results/erl_lib-sac-hopper-cpu/. Nothing of erl_lib is kept in this repo:
# the script clones it at the commit whose CSVs are in results/published/erl_lib/.
#
#   experiments/erl_lib_sac.sh OUT SEED [SEED ...]            # e.g. ~/mgjax-runs/erl_lib-repro 0 1
#   experiments/erl_lib_sac.sh --gather OUT SEED [SEED ...]   # returns.csv of the runs so far
#
# Each seed is a process of its own, all at once, one thread each; OUT/seedS holds erl_lib's
# own outputs (logs.txt, metrics/eval.csv.gz), and OUT/returns.csv the mean test return of
# every evaluation (step,seed,return,episodes). erl_lib's SAC settings as its config files
# give them, except: 100,000 env steps; the warm-up 5,000 random steps (its stored CSVs
# evaluate at 5,000, which needs seed_iters = 5,000; its sac.yaml says 10,000); an evaluation
# every 5,000 steps (its default 10 test episodes, in test envs of their own); and the one
# edit below, which only puts the replay buffer's batches on the CPU where there is no CUDA.
set -euo pipefail
gather_only=0
if [ "$1" = "--gather" ]; then
  gather_only=1
  shift
fi
out=$(realpath -m "$1")
shift
commit=024b0b5149b3025f73ceaefdfb387fb2d397476e
src=${ERL_LIB_DIR:-$HOME/erl_lib}
venv=${ERL_LIB_VENV:-$HOME/erl-venv}

gather() {
  "$venv/bin/python" - "$out" "$@" << 'PY'
import sys

import pandas as pd

out, seeds = sys.argv[1], sys.argv[2:]
rows = []
for seed in seeds:
  episodes = pd.read_csv(f"{out}/seed{seed}/metrics/eval.csv.gz")
  means = episodes.groupby("time_steps_total")["return"].agg(["mean", "size"])
  rows += [(int(step), int(seed), float(m), int(n)) for step, (m, n) in means.iterrows()]
columns = ["step", "seed", "return", "episodes"]
pd.DataFrame(rows, columns=columns).to_csv(f"{out}/returns.csv", index=False)
print(f"{out}/returns.csv")
PY
}

if [ "$gather_only" = 1 ]; then
  gather "$@"
  exit 0
fi
if [ ! -d "$src" ]; then
  git clone https://github.com/4kubo/erl_lib "$src"
fi
git -C "$src" checkout -q "$commit"
# The replay buffer's default target device is CUDA; without CUDA, the CPU.
sed -i '64s/= "cuda",/= "cuda" if torch.cuda.is_available() else "cpu",/' "$src/erl_lib/util/misc.py"
if [ ! -d "$venv" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q torch "mujoco==2.3.7" "gymnasium[mujoco]==0.29.1" "hydra-core==1.3.2" \
    omegaconf tqdm "numpy<2" scipy pandas tensorboardX "imageio[ffmpeg]" matplotlib \
    opencv-python-headless "dm-control==1.0.13"
fi
mkdir -p "$out"
"$venv/bin/pip" freeze > "$out/pip-freeze.txt"
cd "$src"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
for seed in "$@"; do
  "$venv/bin/python" train.py agent=sac env=gym env.task_id=MBHopper-v0 common.device=cpu \
    agent.buffer_device=cpu common.max_time_steps=100000 common.seed="$seed" \
    agent.seed_iters=5000 agent.iters_per_epoch=5000 log.log_dir="$out/seed$seed" \
    log.record=False log.silent=True > "$out/seed$seed.out" 2>&1 &
done
wait
gather "$@"
