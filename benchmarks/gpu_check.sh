#!/usr/bin/env bash
# GPU check: an inference worker with OMNIMIND_DEVICE=cuda; checks CPU equality, batching,
# a hot swap and GPU memory after 100 swaps; writes a JSON report (benchmarks/gpu_check.py).
#
#   benchmarks/gpu_check.sh [report.json]      # default benchmarks/results/gpu_check.json
#
# From a fresh clone: creates the venv if missing (`make .venv/.installed`, which installs the
# CPU torch pin; VENV=path to use another venv). When `nvidia-smi` lists a GPU and the venv's
# torch has no CUDA, it reinstalls the same torch version with pip from the default index
# (PyPI's Linux x86_64 torch wheels are CUDA builds) or from TORCH_INDEX_URL when set, e.g.
# TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128. That download (GBs) is the one slow
# step; the checks themselves are cut at 290 s.
# Without CUDA the checks run with the worker on the CPU, the report says "cuda": false and
# why, and the script exits 0 if they pass. Exit 1: a check failed, or a GPU is present but
# torch still cannot use it.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
OUT=${1:-benchmarks/results/gpu_check.json}
PY="$VENV/bin/python"

if [ ! -e "$VENV/.installed" ] || [ ! -x "$PY" ]; then
    make VENV="$VENV" "$VENV/.installed"
fi

export GPU_CHECK_EXPECT_CUDA=0
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q GPU; then
    export GPU_CHECK_EXPECT_CUDA=1
    if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
        version=$("$PY" -c 'import torch; print(torch.__version__.split("+")[0])')
        echo "gpu_check: torch in $VENV has no CUDA; installing a CUDA build of torch $version" >&2
        "$PY" -m pip uninstall -y -q torch
        "$PY" -m pip install -q --no-cache-dir ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} "torch==$version"
    fi
fi

exec timeout 290 "$PY" benchmarks/gpu_check.py --out "$OUT"
