#!/usr/bin/env bash
# Every GPU measurement of docs/benchmarks/ in one bounded run, with its results packed into a
# few files: a remote GPU host may return only a handful of files from $OUT.
# Usage (repo root, on the GPU machine): scripts/gpu_all.sh [BUNDLE]
#   BUNDLE: the cifar10-jpeg75 folder copied to that machine (default .device/cifar10-jpeg75)
# Budgets in seconds: BENCH_S for scripts/gpu_bench.py, CHECK_S for scripts/gpu_check.sh,
# EXPLORE_S for scripts/gpu_explore.py. Each stage ends within its budget and writes its table;
# a stage that fails does not stop the next. The defaults (350 + 180 + 45) fit a 600 s run: on
# an H200 (2026-11-27) all 10 bench stages took ~345 s with the data build, each of the 9
# gradient checks 13-19 s, the 4 explore settings ~40 s. The three --compile stages come last
# in gpu_bench.py's STAGES, so the defaults leave them out; they take a run of their own (H200:
# train 60 s, compile 275 s, train_compile 99 s):
#   GPU_BENCH_STAGES=train,compile,train_compile BENCH_S=520 CHECK_S=0 EXPLORE_S=0
# and compile_tf32 another (BENCH_S=400; it skips the float64 gradient check and its two
# compiles, so it should take about half that: not measured). CHECK_S=0 / EXPLORE_S=0 leave
# those stages out.
# Bench stages on the H200 with the "fast-serial" runner beside --overlap's fast one: fp32 25 s,
# tf32 35 s, dropout 19 s, deterministic 17 s, train_det 53 s, train + train_noise ~85 s.
# Leaves in $OUT: gpu.tgz (every JSON, table and log; the training cells' metrics too),
# bench_table.txt, check_table.txt, explore.json, gpu.txt (nvidia-smi, versions); prints both
# tables last. GPU_BENCH_DRY=1 runs every stage on the CPU at tiny sizes (tests/test_gpu_scripts.py).
set -uo pipefail
: "${OUT:?set OUT to the folder that comes back}"
BUNDLE=${1:-.device/cifar10-jpeg75}
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
WORK=$(mktemp -d)

if [ "${GPU_BENCH_DRY:-}" = 1 ]; then
    export DEVICE=cpu BATCH_SIZE=4 STEPS=2 MODEL=densenet-bc10-k12  # gpu_check.sh's dry run
    EXPLORE=(--device cpu --model densenet-bc10-k12 --batch-size 4 --steps 2)
else
    EXPLORE=()
fi
# EXPLORE_ARGS: extra gpu_explore.py options (e.g. "--settings fp32,tf32+compile"; the
# convolution-algorithm leads have their own script, scripts/gpu_algos.sh); GPU_BENCH_STAGES and ONLY pass
# through the environment to gpu_bench.py and gpu_check.sh, to redo some of their runs.
read -r -a MORE <<<"${EXPLORE_ARGS:-}"
EXPLORE+=("${MORE[@]}")
nvidia-smi >"$OUT/gpu.txt" 2>&1 || echo "(no nvidia-smi)" >>"$OUT/gpu.txt"
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'cudnn', \
torch.backends.cudnn.version(), torch.cuda.is_available() and torch.cuda.get_device_name(0))" \
    2>&1 | tee -a "$OUT/gpu.txt"

echo "== bench ($(date +%T))"
OUT="$WORK/bench" GPU_BENCH_WORK="$WORK/work" GPU_BENCH_BUDGET_S=${BENCH_S:-350} timeout $((${BENCH_S:-350} + 30)) \
    "$PY" scripts/gpu_bench.py "$BUNDLE"
# CHECK_S=0 / EXPLORE_S=0 leave that stage out (`timeout 0` would mean no limit at all).
if [ "${CHECK_S:-180}" != 0 ]; then
    echo "== gradient check ($(date +%T))"
    CHECK_BUDGET_S=${CHECK_S:-180} PYTHON="$PY" timeout $((${CHECK_S:-180} + 30)) \
        scripts/gpu_check.sh "$WORK/check"
fi
if [ "${EXPLORE_S:-45}" != 0 ]; then
    echo "== explore ($(date +%T))"
    OUT="$WORK" timeout "${EXPLORE_S:-45}" "$PY" scripts/gpu_explore.py "${EXPLORE[@]}"
fi

cp "$WORK/bench/table.txt" "$OUT/bench_table.txt" 2>/dev/null
cp "$WORK/check/table.txt" "$OUT/check_table.txt" 2>/dev/null
cp "$WORK/explore.json" "$OUT/explore.json" 2>/dev/null
tar czf "$OUT/gpu.tgz" -C "$WORK" --exclude=./work/data . && rm -rf "$WORK"
echo "== done ($(date +%T))"
for t in "$OUT/bench_table.txt" "$OUT/check_table.txt"; do
    [ ! -f "$t" ] || cat "$t"
done
