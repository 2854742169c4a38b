#!/usr/bin/env bash
# The prepared device script (one GPU, <= 9 minutes), run from the repository root:
#   OUT=results bash benchmarks/device_session.sh
# 1. Issue 7: train the embedded default model (tiny_64) on the synthetic scenes for a fixed
#    wall-clock budget (benchmarks/train_for_budget.py), then export it.
# 2. Issue 6: bf16 step throughput and MFU of the ViT-B/8 2-frame shape at 224
#    (benchmarks/gpu_step.py).
# 3. Issue 17: dense flow time at 224 with the ViT-B/8 shape (benchmarks/flow_224.py) and folder
#    throughput of `cwm flow DIR` on the GPU, batch 1 and 8 (benchmarks/folder_throughput.py).
# STEPS picks the parts (default "train step flow folder"); the issue-17 measurements alone
# (pretraining MFU of ViT-B/8 224 bf16, flow at 224, folder throughput) take about 5 minutes:
#   OUT=results STEPS="step flow folder" bash benchmarks/device_session.sh
# Everything it writes lands under $OUT: session.log, train_metrics.jsonl, train_config.yaml,
# export/{model.safetensors,config.json}, gpu_step.json, flow_224.json, folder_throughput.json.
set -u
OUT=${OUT:?set OUT to a folder}
TRAIN_MINUTES=${TRAIN_MINUTES:-4.6}
RUN=${RUN:-/tmp/cwm_run}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
exec > >(tee -a "$OUT/session.log") 2>&1
date -u; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; nproc
python3 -c "import torch, timm, accelerate; print('torch', torch.__version__, 'timm', timm.__version__, 'accelerate', accelerate.__version__)"
STEPS=${STEPS:-train step flow folder}
has() { case " $STEPS " in *" $1 "*) return 0;; esac; return 1; }
if has train; then
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
fi
if has step; then
timeout ${STEP_SECONDS:-170} python3 benchmarks/gpu_step.py --out "$OUT/gpu_step.json" --compile ${STEP_ARGS:-}
echo "gpu_step exit $?"
date -u
fi
if has flow; then
timeout ${FLOW_SECONDS:-90} python3 benchmarks/flow_224.py --out "$OUT/flow_224.json" ${FLOW_ARGS:-}
echo "flow_224 exit $?"
date -u
fi
if has folder; then
# one GPU: one process (a second would need a second device), batch 1 and 8
OMP_NUM_THREADS=4 timeout ${FOLDER_SECONDS:-150} python3 benchmarks/folder_throughput.py \
    --out "$OUT/folder_throughput.json" --clips 8 --frames 17 --size 128 --threads 4 --runs 1x1 1x8 ${FOLDER_ARGS:-}
echo "folder_throughput exit $?"
date -u
fi
