#!/usr/bin/env bash
# The convolution-algorithm leads in one bounded run (scripts/gpu_explore.py):
# cuDNN's autotuning limited to torch's default 10 engine configs per convolution vs all of
# them (benchmark_limit 0), each in its own process because cuDNN caches its choice per shape
# for the whole process; weight gradients on a side stream (+overlap); channels_last; and
# torch.compile on top of the full search. fp32 and TF32 throughout.
# Usage (repo root, on the GPU machine): OUT=DIR scripts/gpu_algos.sh
# ALGOS_S bounds the whole script (default 450 s; the two processes get 1/5 and 4/5).
# Leaves in $OUT: explore-lim10.json, explore-lim0.json, gpu.txt. GPU_BENCH_DRY=1 runs the
# same settings (without +compile) on the CPU at tiny sizes (tests/test_gpu_scripts.py).
set -uo pipefail
: "${OUT:?set OUT to the folder that comes back}"
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
BUDGET=${ALGOS_S:-450}
LIM10="fp32,fp32+overlap,tf32,tf32+overlap"
LIM0="fp32,tf32,fp32+overlap,fp32+compile,tf32+compile,fp32+cl,tf32+cl,tf32+overlap"
if [ "${GPU_BENCH_DRY:-}" = 1 ]; then
    ARGS=(--device cpu --model densenet-bc10-k12 --batch-size 4 --steps 2)
    LIM0="fp32,tf32,fp32+overlap,fp32+cl"
else
    ARGS=()
fi
nvidia-smi >"$OUT/gpu.txt" 2>&1 || echo "(no nvidia-smi)" >>"$OUT/gpu.txt"
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'cudnn', \
torch.backends.cudnn.version(), torch.cuda.is_available() and torch.cuda.get_device_name(0))" \
    2>&1 | tee -a "$OUT/gpu.txt"
echo "== benchmark_limit 10 ($(date +%T))"
timeout $((BUDGET / 5)) "$PY" scripts/gpu_explore.py "${ARGS[@]}" --limit 10 --tag lim10 \
    --settings "$LIM10"
echo "== benchmark_limit 0 ($(date +%T))"
timeout $((BUDGET * 4 / 5)) "$PY" scripts/gpu_explore.py "${ARGS[@]}" --limit 0 --tag lim0 \
    --settings "$LIM0"
echo "== done ($(date +%T))"
