#!/usr/bin/env bash
# Create .venv and install the harness with its host-side and test dependencies (idempotent).
# torch 2.14.1 + torchvision 0.29.1: the pair this machine kind serves from local disk; any
# torch >= 1.8 works for densenet/ itself (containers pin their own, containers/images.lock.yaml).
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
# constraints.txt pins every package to the versions CI last passed with (see its header).
if ! .venv/bin/python -c "import torch, torchvision" 2>/dev/null; then
    .venv/bin/pip install -q -c constraints.txt torch==2.14.1 torchvision==0.29.1
fi
.venv/bin/pip install -q -c constraints.txt -e '.[test]'
