"""Model factories: build the ``torch.nn.Module`` a worker serves.

``OMNIMIND_MODEL_FACTORY=package.module:function`` points at any callable that
takes the settings and returns a module. A factory may set
``module.omnimind_input_shape`` (the shape of one example) when its input is not
a flat vector of ``OMNIMIND_MODEL_INPUT_SIZE`` features.

Built in: ``omnimind.models.factory:default_mlp`` (input -> 64 -> 64 -> 1, the
default) and ``omnimind.models.factory:wide_mlp`` (input -> 2048 -> 2048 -> 2048 -> 1,
about 8.4 M parameters: a forward pass of milliseconds on a CPU, for benchmarks and
for trying dynamic batching; no download).

Every worker builds its model with the same seed, so version 0 answers the same
on every node.

>>> from omnimind.config import Settings
>>> model = build_model(Settings(model_input_size=4))
>>> model.omnimind_input_shape
(4,)
>>> sum(p.numel() for p in wide_mlp(Settings(model_input_size=16)).parameters())
8429569
"""
from __future__ import annotations

import importlib
from typing import Callable

import torch
from torch import nn

from omnimind.config import Settings
from omnimind.errors import ConfigError

ModelFactory = Callable[[Settings], nn.Module]


def default_mlp(settings: Settings) -> nn.Module:
    """A small MLP regressor: input -> 64 -> 64 -> 1."""
    size = settings.model_input_size
    return nn.Sequential(nn.Linear(size, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 1))


#: Hidden width and depth of :func:`wide_mlp`.
WIDE_MLP_WIDTH = 2048
WIDE_MLP_DEPTH = 3


def wide_mlp(settings: Settings) -> nn.Module:
    """A heavy MLP regressor: input -> 2048 -> 2048 -> 2048 -> 1 (``WIDE_MLP_WIDTH``/``_DEPTH``)."""
    layers: list[nn.Module] = []
    width_in = settings.model_input_size
    for _ in range(WIDE_MLP_DEPTH):
        layers += [nn.Linear(width_in, WIDE_MLP_WIDTH), nn.ReLU()]
        width_in = WIDE_MLP_WIDTH
    return nn.Sequential(*layers, nn.Linear(width_in, 1))


def load_factory(spec: str) -> ModelFactory:
    """Resolve ``package.module:function``."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"OMNIMIND_MODEL_FACTORY must look like package.module:function, not {spec!r}")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"OMNIMIND_MODEL_FACTORY {spec!r} cannot be loaded: {exc}") from exc
    if not callable(factory):
        raise ConfigError(f"OMNIMIND_MODEL_FACTORY {spec!r} is not callable")
    return factory


def build_model(settings: Settings) -> nn.Module:
    """Build the configured model, deterministically initialised, in eval mode."""
    factory = load_factory(settings.model_factory)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.model_seed)
        model = factory(settings)
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model factory {settings.model_factory!r} returned {type(model).__name__}, not a torch.nn.Module")
    if not hasattr(model, "omnimind_input_shape"):
        model.omnimind_input_shape = (settings.model_input_size,)
    return model.eval()


def select_device(requested: str) -> torch.device:
    """Pick the device. Call this only in the process that will run the model:
    ``torch.cuda.is_available()`` initialises CUDA, which does not survive fork."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(requested)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"OMNIMIND_DEVICE={requested} but CUDA is not available on this machine")
    return device
