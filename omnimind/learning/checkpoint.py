"""Checkpoint encoding without pickle: tensors go to safetensors, everything else to JSON.

:func:`flatten_state` splits a nested ``state_dict()`` (dicts, lists, tensors,
NumPy arrays, JSON scalars) into a flat ``{key: tensor}`` map and a JSON-able
skeleton that points at those keys; :func:`unflatten_state` reverses it.
:func:`save_checkpoint` / :func:`load_checkpoint` keep both in one safetensors file.

>>> import torch, numpy as np
>>> state = {"w": torch.ones(2), "opt": {0: {"step": 3}}, "buf": np.arange(3), "lr": 0.1}
>>> tensors, meta = flatten_state(state)
>>> sorted(tensors)
['buf', 'w']
>>> back = unflatten_state(tensors, meta)
>>> back["opt"][0]["step"], back["buf"].tolist(), back["w"].tolist()
(3, [0, 1, 2], [1.0, 1.0])
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["flatten_state", "unflatten_state", "save_checkpoint", "load_checkpoint"]

_TENSOR, _NDARRAY, _ITEMS = "__tensor__", "__ndarray__", "__items__"


def flatten_state(state: Any) -> tuple[dict[str, torch.Tensor], Any]:
    """Return ``(tensors, meta)``; ``meta`` is JSON-serialisable."""
    tensors: dict[str, torch.Tensor] = {}

    def encode(obj: Any, path: str) -> Any:
        if isinstance(obj, torch.Tensor):
            tensors[path] = obj.detach().cpu().clone().contiguous()
            return {_TENSOR: path}
        if isinstance(obj, np.ndarray):
            tensors[path] = torch.from_numpy(np.array(obj, copy=True, order="C"))
            return {_NDARRAY: path}
        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, dict):
            if all(isinstance(k, str) and not k.startswith("__") for k in obj):
                return {k: encode(v, f"{path}.{k}" if path else k) for k, v in obj.items()}
            # Non-string keys (torch optimizer state uses ints) must keep their type.
            return {_ITEMS: [[k, encode(v, f"{path}.{k}" if path else str(k))] for k, v in obj.items()]}
        if isinstance(obj, (list, tuple)):
            return [encode(v, f"{path}.{i}") for i, v in enumerate(obj)]
        if obj is None or isinstance(obj, (bool, int, float, str)):
            return obj
        raise TypeError(f"cannot checkpoint {type(obj).__name__} at {path!r} without pickle")

    return tensors, encode(state, "")


def unflatten_state(tensors: dict[str, torch.Tensor], meta: Any) -> Any:
    """Inverse of :func:`flatten_state`."""

    def decode(obj: Any) -> Any:
        if isinstance(obj, dict):
            if _TENSOR in obj:
                return tensors[obj[_TENSOR]]
            if _NDARRAY in obj:
                return tensors[obj[_NDARRAY]].numpy()
            if _ITEMS in obj:
                return {k: decode(v) for k, v in obj[_ITEMS]}
            return {k: decode(v) for k, v in obj.items()}
        if isinstance(obj, list):
            return [decode(v) for v in obj]
        return obj

    return decode(meta)


_META_KEY = "omnimind_state"


def save_checkpoint(directory: str | os.PathLike, state: Any, name: str = "learner") -> Path:
    """Write ``<name>.safetensors``: tensors plus the JSON skeleton in the file's
    metadata header. One file written via rename, so a crash leaves either the
    previous checkpoint or the new one, never a mix."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors, meta = flatten_state(state)
    path = directory / f"{name}.safetensors"
    tmp = str(path) + ".tmp"
    save_file(tensors, tmp, metadata={_META_KEY: json.dumps(meta)})
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path


def load_checkpoint(directory: str | os.PathLike, name: str = "learner") -> Any:
    """Read what :func:`save_checkpoint` wrote."""
    from safetensors import safe_open

    path = Path(directory) / f"{name}.safetensors"
    with safe_open(str(path), framework="pt") as fh:
        meta = json.loads(fh.metadata()[_META_KEY])
        tensors = {key: fh.get_tensor(key) for key in fh.keys()}
    return unflatten_state(tensors, meta)
