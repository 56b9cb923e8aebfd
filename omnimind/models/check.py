"""``omnimind model check``: build the configured model against its spec and run one batch.

A dry run for a new factory, signature or head, without Redis or a worker: the
factory builds the module (seeded), its output must fit the head (one logit for
``binary`` with ``bce``, one per class for ``multiclass``), then one example
request made from the signature goes through validation, the forward pass and
the head's decoding, and one learning step runs on a copy. A misfit is a
:class:`~omnimind.errors.ConfigError` whose message says what to change.

>>> from omnimind.config import Settings
>>> report = check_model(Settings(model_input_size=3))
>>> report["head"], report["input"], report["output_width"], report["learn_step"]
('regression', {'shape': [3], 'dtype': 'float32'}, 1, 'ok')
>>> check_model(Settings(model_input_size=3, model_head="multiclass"))
Traceback (most recent call last):
...
omnimind.errors.ConfigError: model factory 'omnimind.models.factory:default_mlp': a multiclass head needs one output per class (at least 2), the model has 1
"""
from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch

from omnimind.config import Settings
from omnimind.errors import ConfigError, InvalidInput
from omnimind.learning import OnlineSGDConfig, OnlineSGDLearner, preprocessing
from omnimind.learning.spec import ModelSpec
from omnimind.models.factory import build_model
from omnimind.signature import Signature

__all__ = ["check_model", "example_request"]


def example_request(signature: Signature | None, shape: tuple) -> Any:
    """One valid request for ``signature`` (zeros, the first declared value, a short token list)."""
    if signature is None:
        return np.zeros(shape, dtype=np.float32).tolist()
    if signature.sequence:
        feature = signature.features[0]
        return {feature.name: [min(1, (feature.vocab or 2) - 1)] * min(3, feature.max_len)}
    example = {}
    for f in signature.features:
        if f.dtype == "string":
            example[f.name] = f.values[0] if f.values else "a"
        elif f.dtype == "bool":
            example[f.name] = False
        elif f.dtype == "int64":
            example[f.name] = 0
        else:
            example[f.name] = [0.0] * int(np.prod(f.shape)) if f.shape else 0.0
    return example


def check_model(settings: Settings) -> dict:
    """The dry run's report (JSON-able); raises ``ConfigError`` when the model does not fit its spec."""
    spec = ModelSpec.from_settings(settings)
    model = build_model(settings)  # refuses an output that does not fit the head
    signature = spec.inputs
    shape = tuple(model.omnimind_input_shape)
    request = example_request(signature, shape)
    try:
        if signature is not None:
            batch, _ = signature.encode([request], settings.max_batch_size)
        else:
            batch = np.zeros((1, *shape), dtype=np.float32)
    except InvalidInput as exc:  # pragma: no cover - example_request builds valid requests
        raise ConfigError(f"the signature refuses its own example request: {exc}") from exc
    x = torch.from_numpy(batch)
    with torch.no_grad():
        out = model(x)
    if not bool(torch.isfinite(out).all()):
        raise ConfigError(f"model factory {settings.model_factory!r}: its output on the example is not finite")
    rows, labels = preprocessing.decode_outputs(model, spec, out.numpy())
    learner = OnlineSGDLearner(copy.deepcopy(model).train(), OnlineSGDConfig(
        learning_rate=0.0, optimizer=settings.learning_optimizer or spec.default_optimizer, loss=spec.loss))
    if spec.loss == "cross_entropy":
        target = torch.zeros(1, dtype=torch.int64)
    else:
        target = torch.zeros((1, out.shape[1]))
    try:
        learner.step(*learner.validate(x, target))
    except Exception as exc:
        raise ConfigError(f"model factory {settings.model_factory!r}: one learning step with loss {spec.loss} "
                          f"fails: {type(exc).__name__}: {exc}") from exc
    return {
        "factory": settings.model_factory, "head": spec.head, "loss": spec.loss,
        "input": {"shape": list(shape), "dtype": str(model.omnimind_input_dtype).replace("torch.", "")},
        "signature": spec.signature, "output_width": int(out.shape[1]), "labels": labels,
        "label_policy": spec.label_policy if spec.is_classifier else None,
        "parameters": sum(p.numel() for p in model.parameters()),
        "preprocessing": sorted(k for k in model.state_dict() if preprocessing.is_state_key(k)),
        "example_request": request, "example_output": rows[0], "learn_step": "ok",
    }
