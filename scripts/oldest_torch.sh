#!/usr/bin/env bash
# Make .venv-oldest: Python 3.8 + torch 1.8.1 + numpy 1.24, the oldest pair densenet/ promises
# to run on (DESIGN.md: Python >= 3.8, torch >= 1.8). tests/test_oldest_torch.py trains, checks
# gradients and benches in it, so "feature-detect, never parse versions" is tested on a real old
# torch, not only by reading the code. torch 1.8.1 is PyPI's CUDA 10.2 wheel (804 MB; it runs on
# a CPU). Idempotent: an interrupted install is redone on the next call.
set -euo pipefail
cd "$(dirname "$0")/.."
PY38=${PYTHON38:-}
if [ -z "$PY38" ]; then
    # pyenv's shim answers even when 3.8 is not selected: prefer the real interpreter.
    for candidate in ~/.pyenv/versions/3.8*/bin/python3.8; do
        [ -x "$candidate" ] && PY38=$candidate
    done
fi
[ -n "$PY38" ] || PY38=$(command -v python3.8 || true)
if [ -z "$PY38" ] || ! "$PY38" -V >/dev/null 2>&1; then
    echo "oldest_torch.sh: no Python 3.8 interpreter found (set PYTHON38=/path/to/python3.8)" >&2
    exit 1
fi
if [ ! -x .venv-oldest/bin/python ]; then
    "$PY38" -m venv .venv-oldest
fi
if ! .venv-oldest/bin/python -c "import torch, numpy" 2>/dev/null; then
    .venv-oldest/bin/pip install -q torch==1.8.1 numpy==1.24.4 typing-extensions==4.13.2
fi
.venv-oldest/bin/python -c "import sys, torch; print('oldest: python %d.%d, torch %s' % (sys.version_info[:2] + (torch.__version__,)))"
