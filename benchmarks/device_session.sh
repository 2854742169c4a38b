#!/usr/bin/env bash
# The prepared device script (one GPU, <= 9 minutes), run from the repository root:
#   OUT=results bash benchmarks/device_session.sh
# 1. Issue 7: train the embedded default model (tiny_64) on the synthetic scenes for a fixed
#    wall-clock budget (benchmarks/train_for_budget.py), then export it.
# 2. Issue 6: bf16 step throughput and MFU of the ViT-B/8 2-frame shape at 224
#    (benchmarks/gpu_step.py).
# Everything it writes lands under $OUT: session.log, train_metrics.jsonl, train_config.yaml,
# export/{model.safetensors,config.json}, gpu_step.json.
set -u
OUT=${OUT:?set OUT to a folder}
TRAIN_MINUTES=${TRAIN_MINUTES:-4.6}
RUN=${RUN:-/tmp/cwm_run}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
exec > >(tee -a "$OUT/session.log") 2>&1
date -u; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; nproc
python3 -c "import torch, timm, accelerate; print('torch', torch.__version__, 'timm', timm.__version__, 'accelerate', accelerate.__version__)"
start=$(date +%s)
timeout $(python3 -c "print(int($TRAIN_MINUTES * 60 + 100))") \
    python3 benchmarks/train_for_budget.py --config pretrain/configs/embedded_tiny64_gpu.yaml \
    --output-dir "$RUN" --minutes "$TRAIN_MINUTES" ${TRAIN_OVERRIDES:-}
echo "training exit $? after $(( $(date +%s) - start )) s"
if [ ! -f "$RUN/export/model.safetensors" ] && [ -d "$RUN/checkpoints" ]; then
    python3 -m pretrain export "$RUN" --out "$RUN/export"
fi
mkdir -p "$OUT/export"
cp "$RUN"/export/* "$OUT/export/" 2>/dev/null
cp "$RUN/metrics.jsonl" "$OUT/train_metrics.jsonl" 2>/dev/null
cp "$RUN/config.yaml" "$OUT/train_config.yaml" 2>/dev/null
date -u
timeout ${STEP_SECONDS:-170} python3 benchmarks/gpu_step.py --out "$OUT/gpu_step.json" --compile ${STEP_ARGS:-}
echo "gpu_step exit $?"
date -u
