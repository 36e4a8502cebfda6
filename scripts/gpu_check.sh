#!/usr/bin/env bash
# Gradient stage on one CUDA GPU, in one go: cuDNN on/off x TF32 on/off, clean and canary,
# plus one clean run with --deterministic on; prints a table and keeps the JSON records.
# Usage (repo root, on the GPU host): scripts/gpu_check.sh [DEST]
#   DEST (default results/gpu_check) receives summary.json (every gradcheck.json, keyed by
#   run), table.txt and runs.log: three files, easy to copy back from a remote GPU host.
#   PYTHON (default python3), MODEL (densenet-bc40-k12), BATCH_SIZE (16), STEPS (3) override;
#   DEVICE=cpu runs the same matrix on the CPU (a dry run of this script: cuDNN and TF32 are
#   then recorded as not applicable).
# Each run is bounded by `timeout 150`; a crashed or timed-out run shows as such in the table.
# ONLY=REGEX runs only the runs whose names match (names: cudnn-on.tf32-off.none, ...).
# CHECK_BUDGET_S (default: none) bounds the whole matrix: a run is cut to what is left of it,
# and skipped (a `skipped` row) when under 10 s are left, so the table is always written.
set -uo pipefail
PY=${PYTHON:-python3}
MODEL=${MODEL:-densenet-bc40-k12}
BS=${BATCH_SIZE:-16}
STEPS=${STEPS:-3}
DEVICE=${DEVICE:-cuda}
DEST=${1:-results/gpu_check}
CELLS=$(mktemp -d)
mkdir -p "$DEST"
LOG="$DEST/runs.log"
: >"$LOG"

if [ "$DEVICE" = cuda ]; then
    if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
        echo "no CUDA device visible to $PY: nothing to check" >&2
        exit 1
    fi
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee -a "$LOG"
fi

BUDGET=${CHECK_BUDGET_S:-}
run() {  # name, then extra gradcheck options
    local name=$1
    shift
    if [ -n "${ONLY:-}" ] && ! [[ $name =~ $ONLY ]]; then
        return  # ONLY (a bash regex on the run names) picks some runs, e.g. to redo them
    fi
    local t0=$SECONDS rc=0 limit=150
    if [ -n "$BUDGET" ]; then
        local left=$((BUDGET - SECONDS))
        if [ "$left" -lt 10 ]; then
            mkdir -p "$CELLS/$name" && echo "CHECK_BUDGET_S=$BUDGET spent" >"$CELLS/$name/skipped"
            echo "== $name: skipped, budget spent" | tee -a "$LOG"
            return
        fi
        [ "$left" -lt "$limit" ] && limit=$left
    fi
    echo "== $name: $*" >>"$LOG"
    timeout "$limit" "$PY" -m densenet gradcheck --out "$CELLS/$name" --model "$MODEL" --device "$DEVICE" \
        --batch-size "$BS" --steps "$STEPS" "$@" >>"$LOG" 2>&1 || rc=$?
    echo "== $name: exit $rc after $((SECONDS - t0)) s" | tee -a "$LOG"
}

for canary in none noncontig-grad; do
    for cudnn in on off; do
        for tf32 in off on; do
            run "cudnn-$cudnn.tf32-$tf32.$canary" --cudnn "$cudnn" --tf32 "$tf32" --canary "$canary"
        done
    done
done
run "cudnn-on.tf32-off.none.deterministic" --cudnn on --tf32 off --canary none --deterministic on

"$PY" - "$CELLS" "$DEST" <<'PYEOF'
"""Collect the gradcheck.json records into summary.json and print one row per run."""
import json
import os
import sys

cells, dest = sys.argv[1], sys.argv[2]
records, rows = {}, []
for name in sorted(os.listdir(cells)):
    path = os.path.join(cells, name, "gradcheck.json")
    if os.path.exists(os.path.join(cells, name, "skipped")):
        rows.append((name, "NOT RUN (the CHECK_BUDGET_S budget was spent)"))
        continue
    if not os.path.exists(path):
        rows.append((name, "CRASHED (no gradcheck.json, see runs.log)"))
        continue
    with open(path) as f:
        r = json.load(f)
    records[name] = r
    if r["verdict"] == "skipped":
        rows.append((name, "skipped: %s" % "; ".join(r.get("reasons") or [])))
        continue
    gc, det = r["gradcheck"], r["determinism"]
    # The canary's non-contiguous cases fail by design; list only the cases that surprised.
    odd = ["%s/%s/cudnn-%s" % (c["conv"], c["layout"], c["cudnn"])
           for c in gc["cases"] if not c["as_expected"]]
    m, med = r["max_rel_err"], r["median_rel_err"]
    rows.append((name, "%-17s %-7s max %-9s median %-9s flips %-3d | gradcheck env-cases %-4s "
                 "canary-caught %-4s | det-equal %-5s max|d| %-8.3g | %5.1f s | unexpected: %s" % (
                     r["verdict"], r["precision"], "nan" if m is None else "%.3g" % m,
                     "nan" if med is None else "%.3g" % med, r["forward"]["relu_signs_aligned"],
                     "ok" if gc["configured_passed"] else "FAIL",
                     "yes" if gc["canary_detected"] else "NO", det["bitwise_equal"],
                     det["max_abs_diff"], r["wall_s"], ", ".join(odd) or "none")))
env = next(iter(records.values()), {}).get("environ", {})
head = "torch %s, CUDA %s, cuDNN %s, GPU %s, driver %s" % (
    env.get("torch"), env.get("cuda"), env.get("cudnn"), (env.get("gpu") or {}).get("name"),
    (env.get("gpu") or {}).get("driver"))
lines = [head] + ["%-40s %s" % row for row in rows]
with open(os.path.join(dest, "table.txt"), "w") as f:
    f.write("\n".join(lines) + "\n")
with open(os.path.join(dest, "summary.json"), "w") as f:
    json.dump(records, f, indent=1, sort_keys=True)
print("\n".join(lines))
PYEOF
rm -rf "$CELLS"
