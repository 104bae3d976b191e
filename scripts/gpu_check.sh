#!/usr/bin/env bash
# The GPU check, one run of under 10 minutes on one GPU:
#   1. the suite's CUDA tests (bf16 loading, batched decoding equal to solo decoding, the classifier batcher) and
#      the default AG News LSTM at four seeds (scripts/benchmark_agnews.py, its TF-IDF baseline in each call),
#      side by side with
#   2. the all-MiniLM-L6-v2 SST-2 sweep (scripts/sweep_minilm_sst2.py: seeds x learning rates x epochs), then, alone
#      on the GPU,
#   3. the serving benchmark (scripts/bench_serving.py) at 1 and 64 clients and streams, the sweep's best model as
#      the classifier, decoding steps replayed as CUDA graphs (--cuda_graphs), and, while time is left,
#   4. the streams again, passed over twice, by the decoding worker alone (no HTTP) and through the server
#      (scripts/profile_streams.py): what HTTP costs, and any stall of a first pass; then, while time is left, 64
#      streams through the server with --stream_interval 4.
# Results go under $OUT (or docs/benchmarks without it): gpu/ (the benchmark's table, JSON and plots), sweep.json,
# cuda-graphs.txt, stream-interval-4.txt.
#
# On a machine that reaches neither the hub nor PyPI, pack what it lacks here first (scripts/gpu_payload.py pack):
# the run finds .gpu/ and installs and unpacks it. Without .gpu/, textsvc and its requirements must be installed
# there already, the default models are prepared, and the data is read from $DATA_DIR (default ../shared/data).
# TRAINING=0 leaves out the AG News seeds and trains one small SST-2 classifier in place of the sweep, so that the
# serving stages get the time (about 3 minutes saved).
# A rehearsal on the CPU (minutes):
#   GPU_CHECK_DEVICE=cpu SWEEP_FLAGS="--max_train_samples 200 --max_seq_length 32 --seeds 1 --learning_rates 1e-4
#   --epochs 1 --parallel 1" BENCH_FLAGS="--classify_requests 16 --streams 1,2 --max_new_tokens 4" \
#   PROFILE_FLAGS="--streams 1,2 --max_new_tokens 4" \
#   AGNEWS_SAMPLE=<a few hundred rows> AGNEWS_TRAIN=', "num_train_epochs": 1' PATH=$PWD/.venv/bin:$PATH \
#   bash scripts/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT_DIR="${OUT:-docs/benchmarks}"
WORK="${GPU_WORK:-/tmp/textsvc-gpu}"
mkdir -p "$OUT_DIR" "$WORK"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
DEVICE="${GPU_CHECK_DEVICE:-cuda}"  # cpu, with tiny SWEEP_FLAGS and BENCH_FLAGS: a rehearsal of the script itself
stage() { echo "== [${SECONDS} s] $*"; }

stage "set-up"
if [ -d .gpu ]; then
  [ "$DEVICE" = cpu ] ||  # the rehearsal runs in the project's venv (Python 3.11, for which the wheels are not)
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$WORK/site" \
    .gpu/whl/*.whl || exit 1
  export PYTHONPATH="$WORK/site:$PWD"
  python3 scripts/gpu_payload.py unpack --dest "$WORK" || exit 1
  ENCODER="$WORK/minilm" DATA="$WORK/data" GENERATOR="$WORK/smollm2-135m"
else
  export PYTHONPATH="$PWD"
  python3 -m textsvc.cli prepare-defaults --home "$WORK/home" || exit 1
  ENCODER="" DATA="${DATA_DIR:-../shared/data}" GENERATOR="$WORK/home/models/smollm2-135m"
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import sys, torch, transformers, datasets, pyarrow, huggingface_hub as hub; print(sys.version.split()[0],
 'torch', torch.__version__, 'transformers', transformers.__version__, 'datasets', datasets.__version__,
 'pyarrow', pyarrow.__version__, 'huggingface_hub', hub.__version__)"

stage "CUDA tests and the default AG News LSTM at four seeds, beside the SST-2 sweep"
timeout 300 python3 -m pytest -q -p no:cacheprovider -m cuda tests/serving/test_cuda.py tests/serving/test_dtype.py \
  > "$WORK/tests.log" 2>&1 &
side=($!)
embeddings=""  # the default embeddings' folder, where no package installs them
[ -n "$ENCODER" ] && embeddings="\"model\": {\"embedding_init\": \"$ENCODER\"}, "
seeds="1 2 3 42"
if [ "${TRAINING:-1}" = 0 ]; then  # TRAINING=0: serving alone (their figures of 2026-12-04 are in the README)
  seeds="" SWEEP_FLAGS="--learning_rates 1e-4 --epochs 1 --seeds 1 --max_train_samples 4000 --parallel 1"
fi
for seed in $seeds; do  # each call runs the TF-IDF baseline too
  OMP_NUM_THREADS=1 timeout 300 python3 scripts/benchmark_agnews.py --runs lstm --disable_tqdm \
    --sample "${AGNEWS_SAMPLE:-$DATA/ag_news/train_sample.tsv}" --output_dir "$WORK/agnews-s$seed" \
    --overrides "{\"lstm\": {$embeddings\"train\": {\"seed\": $seed${AGNEWS_TRAIN:-}}}}" \
    > "$WORK/agnews-s$seed.log" 2>&1 &
  side+=($!)
done
OMP_NUM_THREADS=2 timeout "${SWEEP_SECONDS:-300}" python3 scripts/sweep_minilm_sst2.py --data_dir "$DATA/sst2" \
  ${ENCODER:+--model_name_or_path "$ENCODER"} --output_dir "$WORK/sweep" --learning_rates 5e-5 1e-4 2e-4 \
  --epochs 2 4 --seeds 1 2 --batch_size 64 --parallel 12 ${SWEEP_FLAGS:-}
echo "sweep exit $?"
cp "$WORK/sweep/sweep.json" "$OUT_DIR/" 2>/dev/null
for pid in "${side[@]}"; do wait "$pid"; echo "side job exit $?"; done
cat "$WORK/tests.log"
for seed in $seeds; do echo "-- AG News, default LSTM, seed $seed"; tail -8 "$WORK/agnews-s$seed.log"; done

stage "serving benchmark"
models="$WORK/models"
rm -rf "$models" && mkdir -p "$models"
mv "$GENERATOR" "$models/smollm2-135m"  # moved, not linked: serve skips links that leave its folder
best=$(python3 -c "import json, sys; runs = [r for r in json.load(open(sys.argv[1])) if 'error' not in r]
print(max(runs, key=lambda r: r['validation_accuracy'])['name'] if runs else '')" "$WORK/sweep/sweep.json" 2>/dev/null)
if [ -n "$best" ]; then
  mv "$WORK/sweep/runs/$best" "$models/sst2-minilm"
else  # no sweep run finished: a quick classifier of the same size serves for the speed figures
  timeout 120 python3 -m textsvc.cli train-classifier --arch transformer ${ENCODER:+--model_name_or_path "$ENCODER"} \
    --train_file "$DATA/sst2/train.tsv" --max_train_samples 2000 --num_train_epochs 1 --max_seq_length 64 \
    --label_names negative,positive --disable_tqdm --output_dir "$models/sst2-minilm" > "$WORK/quick.log" 2>&1 \
    || tail -20 "$WORK/quick.log"
fi
timeout 180 python3 scripts/bench_serving.py --models_dir "$models" --classifier sst2-minilm \
  --generator smollm2-135m --texts_file "$DATA/ag_news/train_sample.tsv" --rounds 1 --threads 16 \
  --peer_device "$DEVICE" --serve_flag "--device $DEVICE" --serve_flag "--max_generation_batch_size 64" \
  --serve_flag "--max_batch_size 64" --serve_flag=--cuda_graphs --classify_clients 1,64 --classify_requests 640 \
  --poisson_rate 400 --streams 1,64 --skip onnx,llama,llama-server --output_dir "$OUT_DIR/gpu" ${BENCH_FLAGS:-}
echo "benchmark exit $?"
for log in /tmp/textsvc-serve-*.log; do echo "-- $log (tail)"; tail -5 "$log"; done

left=$(( ${CHECK_SECONDS:-570} - SECONDS ))
if [ "$left" -gt 90 ]; then
  stage "streams replayed as CUDA graphs, by the worker alone and through the server ($left s left): a cold and" \
    "a warm pass"
  timeout "$left" python3 scripts/profile_streams.py --models_dir "$models" --generator smollm2-135m \
    --streams 1,64 --passes 2 --in_process "$DEVICE" --serve_flag "--device $DEVICE" \
    --serve_flag "--max_generation_batch_size 64" --serve_flag=--cuda_graphs ${PROFILE_FLAGS:-} 2>&1 \
    | grep -v "Loading weights" | tee "$OUT_DIR/cuda-graphs.txt"
fi
left=$(( ${CHECK_SECONDS:-570} - SECONDS ))
if [ "$left" -gt 60 ]; then
  stage "64 streams through the server in groups of 4 tokens (--stream_interval 4; $left s left)"
  timeout "$left" python3 scripts/profile_streams.py --models_dir "$models" --generator smollm2-135m \
    --streams 64 --passes 2 --serve_flag "--device $DEVICE" --serve_flag "--max_generation_batch_size 64" \
    --serve_flag=--cuda_graphs --serve_flag "--stream_interval 4" 2>&1 \
    | grep -v "Loading weights" | tee "$OUT_DIR/stream-interval-4.txt"
fi
stage "done"
