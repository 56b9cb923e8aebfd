"""Weights as bytes: safetensors encoding, SHA-256, and strict loading into a module.

Never pickle: :func:`encode_state_dict` writes safetensors, :func:`decode_state_dict`
reads it back as CPU tensors, bit for bit. :func:`load_into` refuses weights that
do not fit a module with :class:`IncompatibleWeights` naming what is wrong,
before touching a single parameter, so a module is never left half-loaded.

>>> import torch
>>> from torch import nn
>>> blob = encode_state_dict({"w": torch.arange(4.0), "b": torch.zeros(2, dtype=torch.int64)})
>>> back = decode_state_dict(blob)
>>> sorted(back), back["w"].tolist(), back["b"].dtype
(['b', 'w'], [0.0, 1.0, 2.0, 3.0], torch.int64)
>>> len(sha256_hex(blob))
64
>>> load_into(nn.Linear(2, 1), {"weight": torch.zeros(1, 3)})
Traceback (most recent call last):
...
omnimind.models.errors.IncompatibleWeights: weights do not fit the model: shape mismatch: weight expected (1, 2), got (1, 3); missing keys: bias
"""
from __future__ import annotations

import hashlib
from typing import Mapping

import torch
from safetensors.torch import load as _st_load
from safetensors.torch import save as _st_save
from torch import nn

from omnimind.learning.preprocessing import is_state_key
from omnimind.models.errors import IncompatibleWeights

__all__ = ["encode_state_dict", "decode_state_dict", "sha256_hex", "incompatibilities", "load_into"]


def sha256_hex(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()


def encode_state_dict(state_dict: Mapping[str, torch.Tensor]) -> bytes:
    """safetensors bytes of a state_dict (tensors moved to CPU; tied tensors copied apart)."""
    tensors: dict[str, torch.Tensor] = {}
    seen_storage: set[int] = set()
    for key, value in state_dict.items():
        if not isinstance(key, str):
            raise TypeError(f"state_dict keys must be strings, not {type(key).__name__} ({key!r})")
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"state_dict[{key!r}] is a {type(value).__name__}, not a tensor")
        tensor = value.detach().to("cpu").contiguous()
        if tensor.numel():
            ptr = tensor.untyped_storage().data_ptr()
            # safetensors refuses tensors sharing memory (tied weights): give each its own.
            if ptr in seen_storage:
                tensor = tensor.clone()
            seen_storage.add(tensor.untyped_storage().data_ptr())
        tensors[key] = tensor
    return _st_save(tensors)


def decode_state_dict(blob: bytes) -> dict[str, torch.Tensor]:
    """CPU tensors from safetensors bytes; raises ValueError when the bytes are not safetensors."""
    try:
        return _st_load(bytes(blob))
    except Exception as exc:  # safetensors raises its own SafetensorError, or others on garbage
        raise ValueError(f"not a safetensors blob: {type(exc).__name__}: {exc}") from exc


def incompatibilities(module: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> list[str]:
    """What keeps ``state_dict`` from loading strictly into ``module`` (empty when it fits)."""
    expected = module.state_dict()
    problems = []
    shapes = [
        f"{key} expected {tuple(expected[key].shape)}, got {tuple(value.shape)}"
        for key, value in state_dict.items()
        if key in expected and tuple(value.shape) != tuple(expected[key].shape)
    ]
    if shapes:
        problems.append("shape mismatch: " + ", ".join(shapes))
    # Preprocessing state may be absent: a version published before it existed loads with fresh
    # (identity) transforms (omnimind.learning.preprocessing).
    missing = [key for key in expected if key not in state_dict and not is_state_key(key)]
    if missing:
        problems.append("missing keys: " + ", ".join(missing))
    unexpected = [key for key in state_dict if key not in expected]
    if unexpected:
        problems.append("unexpected keys: " + ", ".join(unexpected))
    kinds = [
        f"{key} expected {expected[key].dtype}, got {value.dtype}"
        for key, value in state_dict.items()
        if key in expected and value.dtype.is_floating_point != expected[key].dtype.is_floating_point
    ]
    if kinds:
        problems.append("dtype kind mismatch: " + ", ".join(kinds))
    return problems


def load_into(module: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> nn.Module:
    """Strictly load ``state_dict`` into ``module`` (on the module's device); returns the module."""
    problems = incompatibilities(module, state_dict)
    if problems:
        raise IncompatibleWeights("; ".join(problems))
    fresh = {key: value for key, value in module.state_dict().items() if is_state_key(key) and key not in state_dict}
    if fresh:
        state_dict = {**fresh, **state_dict}
    try:
        module.load_state_dict(state_dict, strict=True)
    except RuntimeError as exc:  # anything the pre-check did not foresee
        raise IncompatibleWeights(str(exc).strip().splitlines()[0]) from exc
    return module
