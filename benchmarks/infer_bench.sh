#!/usr/bin/env bash
# Inference latency of exported models on every backend this machine has (robostack infer-bench), for:
#   - the Diffusion-Policy-sized U-Net (down dims 256/512/1024, horizon 16, 10 DDIM steps) on `push`,
#   - the Gaussian MLP policy (256x3).
# Latency does not depend on the weights' values, so each policy is trained for a few steps only.
# Usage: bash benchmarks/infer_bench.sh [WORKDIR] [THREADS]    (results: benchmarks/results/infer_*.md/json)
set -euo pipefail
cd "$(dirname "$0")/.."
W=${1:-runs/infer-bench}
THREADS=${2:-1}
RS=${ROBOSTACK:-.venv/bin/robostack}
mkdir -p "$W" benchmarks/results
[ -f "$W/push.zarr/zarr.json" ] || $RS sim demos --task push --episodes 10 --out "$W/push.zarr"
[ -d "$W/dp/checkpoints" ] || $RS train --policy diffusion --data "$W/push.zarr" --out "$W/dp" --steps 2 \
  --policy.unet.down_dims=[256,512,1024] --policy.unet.step_embed_dim=256 --optim.batch_size=8 --eval.episodes=0
[ -d "$W/mlp/checkpoints" ] || $RS train --config configs/policies/gaussian_push.yaml --data "$W/push.zarr" \
  --out "$W/mlp" --steps 2 --eval.episodes=0
[ -f "$W/dp.onnx" ] || $RS export --policy "$W/dp" --out "$W/dp.onnx" --steps 10
[ -f "$W/mlp.onnx" ] || $RS export --policy "$W/mlp" --out "$W/mlp.onnx"
OMP_NUM_THREADS=$THREADS $RS infer-bench --model "$W/dp.onnx" --threads "$THREADS" --iters 30 --out "$W/res_dp"
OMP_NUM_THREADS=$THREADS $RS infer-bench --model "$W/mlp.onnx" --threads "$THREADS" --iters 2000 --out "$W/res_mlp"
cp "$W/res_dp/results.md" benchmarks/results/infer_diffusion_256-512-1024.md
cp "$W/res_dp/results.json" benchmarks/results/infer_diffusion_256-512-1024.json
cp "$W/res_mlp/results.md" benchmarks/results/infer_gaussian_mlp.md
cp "$W/res_mlp/results.json" benchmarks/results/infer_gaussian_mlp.json
