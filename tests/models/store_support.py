"""Helpers shared by the model store's tests."""
from __future__ import annotations

import time

import torch
from prometheus_client import REGISTRY

from omnimind.config import Settings
from omnimind.models.factory import build_model
from omnimind.models.store import ModelStore


def counter(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


def mlp_state(seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return build_model(Settings()).state_dict()


def bits(t: torch.Tensor) -> bytes:
    return t.contiguous().flatten().view(torch.uint8).numpy().tobytes()


def next_notice(pubsub, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        notice = ModelStore.parse_notice(pubsub.get_message(timeout=0.2))
        if notice is not None:
            return notice
    raise AssertionError("no update notice arrived")
