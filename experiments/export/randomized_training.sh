#!/usr/bin/env bash
# Does domain randomisation buy robustness? The quickstart trial (PPO, InvertedPendulum-v5, reference reward,
# seed 0, 50k steps) trained again on randomised physics (experiments/export/ranges_quickstart.yaml, written
# by hand), exported, and measured like experiments/export/quickstart_export.sh measured the nominal one:
# the same robustness grid and RAPP's feasible ranges.
# Run from the repository root:  bash experiments/export/randomized_training.sh
# About 3 minutes on 2 cores. Results go to experiments/results/export-randomized/ (which must not exist yet).
set -euo pipefail
RL=${RL:-.venv/bin/rewardlab}
OUT=runs/export-randomized
RESULTS=experiments/results/export-randomized
if [ -e "$RESULTS" ]; then echo "$RESULTS exists; move it away first (results are never overwritten)" >&2; exit 2; fi
mkdir -p "$RESULTS"
start=$(date +%s)
cp experiments/export/ranges_quickstart.yaml "$RESULTS/training_ranges.yaml"
"$RL" train --env mujoco/InvertedPendulum-v5 --reward reference --algo ppo --steps 50000 --seed 0 \
  --eval-episodes 5 --eval-every 10000 --randomize experiments/export/ranges_quickstart.yaml --out "$OUT/train" \
  | tee "$RESULTS/train.txt"
trial=$(ls -td "$OUT"/train/mujoco_InvertedPendulum-v5-reference-ppo-0* | head -1)
cp "$trial/result.json" "$RESULTS/train_result.json"
"$RL" export "$trial" --dest "$RESULTS/onnx" | tee "$RESULTS/export.txt"
"$RL" play "$RESULTS/onnx" | tee "$RESULTS/play.txt"
"$RL" robustness "$RESULTS/onnx" --grid mass=0.5,1,1.5,2,3,4 --grid actuator_gain=0.1,0.25,0.5,1,2,4 \
  --episodes 3 --save "$RESULTS" | tee "$RESULTS/robustness.txt"
"$RL" randomize feasible "$RESULTS/onnx" --episodes 3 --save "$RESULTS/feasible.json" | tee "$RESULTS/feasible.txt"
echo "wall time: $(( $(date +%s) - start )) s" | tee "$RESULTS/wall_time.txt"
