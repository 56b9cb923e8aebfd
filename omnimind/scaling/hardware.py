"""What hardware a node has, detected without initialising CUDA.

The worker's main process must not touch CUDA (prefork children could not use
it after the fork), so GPUs are read through ``nvidia-smi`` rather than torch.

>>> hw = detect_hardware()
>>> hw["cpu_count"] >= 1 and hw["memory_gb"] > 0
True
"""
from __future__ import annotations

import os
import shutil
import subprocess
from typing import Any

import psutil

_QUERY = ["--query-gpu=name,memory.total,memory.free", "--format=csv,noheader,nounits"]


def detect_gpus(timeout: float = 5.0) -> list[dict[str, Any]]:
    """One dict per GPU: name, total_gb, free_gb. Empty without NVIDIA GPUs."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        out = subprocess.run([smi, *_QUERY], capture_output=True, text=True, timeout=timeout, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    gpus = []
    for line in out.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 3:
            continue
        try:
            gpus.append({"name": parts[0], "total_gb": float(parts[1]) / 1024, "free_gb": float(parts[2]) / 1024})
        except ValueError:
            continue
    return gpus


def detect_hardware() -> dict[str, Any]:
    gpus = detect_gpus()
    hardware: dict[str, Any] = {
        "cpu_count": os.cpu_count() or 1,
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 2),
    }
    if gpus:
        # The first GPU is the one the worker serves on; all are listed.
        hardware["gpu"] = gpus[0]
        hardware["gpus"] = gpus
    return hardware
