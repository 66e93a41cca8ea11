#!/usr/bin/env bash
# Sim-to-real export of the quickstart policy (issue 11): train the quickstart's reference-reward PPO trial
# (InvertedPendulum-v5, seed 0, 50k steps), export it to ONNX (parity check with onnxruntime), replay
# the ONNX file with `rewardlab play` (no torch), evaluate its robustness over a mass x actuator-gain
# grid (heat map), measure its feasible ranges (RAPP) and ask the offline provider (labelled no-LLM
# baseline) for domain randomisation ranges inside them.
# Run from the repository root:  bash experiments/export/quickstart_export.sh
# About 3 minutes on 2 cores (179 s in the committed run). Results go to experiments/results/export-quickstart/ (which must not
# exist yet: nothing is overwritten); the training run and the proposal's store go to runs/export-quickstart/.
set -euo pipefail
RL=${RL:-.venv/bin/rewardlab}
OUT=runs/export-quickstart
RESULTS=experiments/results/export-quickstart
if [ -e "$RESULTS" ]; then echo "$RESULTS exists; move it away first (results are never overwritten)" >&2; exit 2; fi
mkdir -p "$RESULTS"
start=$(date +%s)
"$RL" train --env mujoco/InvertedPendulum-v5 --reward reference --algo ppo --steps 50000 --seed 0 \
  --eval-episodes 5 --eval-every 10000 --out "$OUT/train" | tee "$RESULTS/train.txt"
trial=$(ls -td "$OUT"/train/mujoco_InvertedPendulum-v5-reference-ppo-0* | head -1)
cp "$trial/result.json" "$RESULTS/train_result.json"
"$RL" export "$trial" --dest "$RESULTS/onnx" | tee "$RESULTS/export.txt"
"$RL" play "$RESULTS/onnx" | tee "$RESULTS/play.txt"
"$RL" robustness "$RESULTS/onnx" --grid mass=0.5,1,1.5,2,3,4 --grid actuator_gain=0.1,0.25,0.5,1,2,4 \
  --episodes 3 --save "$RESULTS" | tee "$RESULTS/robustness.txt"
"$RL" randomize feasible "$RESULTS/onnx" --episodes 3 --save "$RESULTS/feasible.json" | tee "$RESULTS/feasible.txt"
"$RL" randomize propose "$RESULTS/onnx" --feasible "$RESULTS/feasible.json" --provider offline --out "$OUT" \
  | tee "$RESULTS/propose.txt"
proposal=$(ls -td "$OUT"/randomize-* | head -1)
cp "$proposal/ranges.yaml" "$RESULTS/offline_ranges.yaml"
cp "$proposal/prompt.md" "$RESULTS/randomization_prompt.md"
echo "wall time: $(( $(date +%s) - start )) s" | tee "$RESULTS/wall_time.txt"
