#!/usr/bin/env bash
# The GPU path, measured in one go on a machine with a CUDA GPU (not run yet: no GPU has been lent to the
# ManiSkill3 issue). It installs rewardlab with ManiSkill3 and a CUDA torch into .venv-gpu, runs the GPU tests
# (tests/test_gpu_trainer.py: the physx_cuda rollout with 1024 envs and states and program rewards on the
# device, agreeing with numpy; a short gpu-trainer run) and the ManiSkill benchmark (program-reward ÷
# env-dense-reward steps/s at 1024 envs, and steps/s with the program reward at 1k/4k/16k envs), then trains
# PickCube with the gpu trainer for 2M steps. Everything lands in $OUT (default benchmarks/gpu_out):
#   machine.txt (nvidia-smi, torch, versions), tests.txt, results_maniskill_gpu.json, train.txt, figures.txt
# Usage: OUT=/some/dir benchmarks/gpu_maniskill.sh   (about 10 minutes on one H100/H200-class GPU, untested)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-benchmarks/gpu_out}
mkdir -p "$OUT"
export OMP_NUM_THREADS=1

if [ ! -x .venv-gpu/bin/python ]; then
  python3 -m venv .venv-gpu
  .venv-gpu/bin/pip install -q --upgrade pip
  .venv-gpu/bin/pip install -q torch            # the registry's default torch is a CUDA build
  .venv-gpu/bin/pip install -q -e ".[dev,maniskill]"
fi
PY=.venv-gpu/bin/python

{ nvidia-smi || true
  $PY -c "import torch, mani_skill, sapien; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0)); print('mani_skill', mani_skill.__version__, 'sapien', sapien.__version__)"
} > "$OUT/machine.txt" 2>&1
$PY -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device: this script measures the GPU path only')"

$PY -m pytest -q -p no:cacheprovider tests/test_gpu_trainer.py tests/test_maniskill.py -k "not sb3" 2>&1 | tee "$OUT/tests.txt"
$PY -m benchmarks.maniskill --pairs 10 --steps 200 --gpu-steps 200 --out "$OUT/results_maniskill_gpu.json" | tee "$OUT/bench.txt"
timeout 1200 .venv-gpu/bin/rewardlab train --env maniskill/PickCube-v1 --reward reference --trainer gpu --algo ppo \
  --steps 2000000 --eval-episodes 16 --out "$OUT/train" 2>&1 | tail -20 > "$OUT/train.txt" || true

$PY - "$OUT" <<'PY' > "$OUT/figures.txt"
import json, sys
r = json.load(open(f"{sys.argv[1]}/results_maniskill_gpu.json"))
a = r["program_over_env"]
print(f"machine: {r['machine'].get('gpu')} | torch {r['machine']['torch']} | mani_skill {r['machine'].get('mani_skill')}")
print(f"program/env steps/s ratio ({a['num_envs']} envs, {a['device']}): median {a['median']:.3f}, IQR {a['iqr'][0]:.3f}-{a['iqr'][1]:.3f} (goal >= 0.95)")
for n, v in r["gpu_steps_per_s"].items():
    print(f"steps/s with the program reward, {n} envs: {v if isinstance(v, str) else f'{v:,.0f}'}")
PY
cat "$OUT/figures.txt"
