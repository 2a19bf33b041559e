#!/usr/bin/env bash
# One call on a lent GPU machine: GPU runtime parity + chunk latency (see gpu_check.py). Usage on that machine:
#   bash benchmarks/gpu_check.sh OUT_DIR
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/gpu-check}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/nvidia-smi.txt"
PYTHONUNBUFFERED=1 PYTHONPATH=. timeout 520 python3 benchmarks/gpu_check.py --out "$OUT" --budget-s ${BUDGET_S:-400} 2>&1 \
  | tee "$OUT/gpu_check.log"
