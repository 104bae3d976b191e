#!/usr/bin/env bash
# The GPU check, in one run under 8 minutes on one GPU: the suite's CUDA tests, then the serving benchmark at a few
# concurrencies on the GPU. Prepare the wheels here first (scripts/gpu_wheels.sh); then, on the GPU machine:
#   bash scripts/gpu_check.sh            (results under $OUT, or docs/benchmarks/gpu without it)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT_DIR="${OUT:-docs/benchmarks}/gpu"
python3 -m pip install --quiet --no-deps --no-index .whl/*.whl
python3 -m pip install --quiet --no-deps -e .
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
timeout 240 python3 -m pytest -q -p no:cacheprovider -m cuda tests/serving/test_cuda.py tests/serving/test_dtype.py
# the default models, prepared on the GPU (the classifier fine-tunes for one epoch: under a minute there)
timeout 180 python3 -m textsvc.cli prepare-defaults --home /tmp/textsvc-home
timeout 240 python3 scripts/bench_serving.py --models_dir /tmp/textsvc-home/models --rounds 1 --threads 16 \
  --classify_clients 1,64 --classify_requests 640 --streams 1,64 --skip onnx,llama,llama-server \
  --serve_flag "--device cuda" --serve_flag "--max_generation_batch_size 64" --serve_flag "--max_batch_size 64" \
  --peer_device cuda --output_dir "$OUT_DIR"
