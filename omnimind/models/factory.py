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
from omnimind.learning import preprocessing
from omnimind.learning.spec import ModelSpec

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
    spec = ModelSpec.from_settings(settings)
    signature = spec.inputs
    if not hasattr(model, "omnimind_input_shape"):
        model.omnimind_input_shape = signature.example_shape if signature else (settings.model_input_size,)
    # What the model's forward takes: float32 features, or int64 token ids (an nn.Embedding's input).
    model.omnimind_input_dtype = torch.int64 if signature is not None and signature.sequence else torch.float32
    if signature is not None and signature.sequence:
        _check_vocab(model, signature.features[0].vocab, settings.model_factory)
    shape = tuple(model.omnimind_input_shape)
    preprocessing.attach_mask(model, spec)
    width = output_width(model, spec, shape, settings.model_factory)
    preprocessing.attach(model, spec, input_width=shape[0] if len(shape) == 1 else None, output_width=width)
    return model.eval()


def _check_vocab(model: nn.Module, vocab: int, name: str) -> None:
    """Token ids in ``[0, vocab)`` must index the model's (first) embedding table."""
    embedding = next((m for m in model.modules() if isinstance(m, nn.Embedding)), None)
    if embedding is not None and vocab > embedding.num_embeddings:
        raise ConfigError(f"model factory {name!r}: the signature's vocab {vocab} is larger than the model's "
                          f"nn.Embedding ({embedding.num_embeddings} ids)")


def output_width(model: nn.Module, spec: ModelSpec, shape: tuple, name: str = "the model") -> int:
    """The width of ``model``'s output on one example of ``shape``; raises ``ConfigError``
    when that output does not fit ``spec``'s head."""
    dtype = getattr(model, "omnimind_input_dtype", torch.float32)
    try:
        with torch.no_grad():
            out = model.eval()(torch.zeros((1, *shape), dtype=dtype))
    except Exception as exc:  # the factory's module cannot run on its own declared input
        raise ConfigError(f"model factory {name!r}: a forward pass on one example of shape {shape} "
                          f"fails: {type(exc).__name__}: {exc}") from exc
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != 1:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ConfigError(f"model factory {name!r} must return a (batch, outputs) tensor, got {got}")
    width = int(out.shape[1])
    if spec.head == "binary" and spec.loss == "bce" and width != 1:
        raise ConfigError(f"model factory {name!r}: a binary head with bce needs 1 output (a logit), "
                          f"the model has {width}")
    if spec.head == "binary" and spec.loss == "cross_entropy" and width != 2:
        raise ConfigError(f"model factory {name!r}: a binary head with cross_entropy needs 2 outputs (one logit "
                          f"per class), the model has {width}")
    if spec.head == "multiclass" and width < 2:
        raise ConfigError(f"model factory {name!r}: a multiclass head needs one output per class (at least 2), "
                          f"the model has {width}")
    if spec.is_classifier and width < len(spec.labels) and spec.head == "multiclass":
        raise ConfigError(f"model factory {name!r}: {len(spec.labels)} labels declared but the model has "
                          f"{width} outputs")
    return width


def select_device(requested: str) -> torch.device:
    """Pick the device. Call this only in the process that will run the model:
    ``torch.cuda.is_available()`` initialises CUDA, which does not survive fork."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(requested)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"OMNIMIND_DEVICE={requested} but CUDA is not available on this machine")
    return device
