"""The model a worker process serves, built once per process.

The runtime is built lazily in the process that runs tasks: in a prefork
worker that is each pool child (after the fork, so CUDA is initialised where it
is used); with the solo or threads pool it is the worker process itself.
Serving reads ``(model, version)`` as one reference, so a later hot swap (one
assignment) never mixes the weights of two versions inside a request.

>>> from omnimind.config import Settings
>>> runtime = ModelRuntime(Settings(model_input_size=3))
>>> out = runtime.predict([[0.0, 1.0, 2.0], [1.0, 1.0, 1.0]])
>>> len(out.outputs), out.model_version, out.single
(2, 0, False)
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Any

import torch

from omnimind.config import Settings
from omnimind.learning.versions import ModelVersion
from omnimind.models.errors import CorruptModel
from omnimind.models.factory import build_model, select_device
from omnimind.models.serialization import load_into
from omnimind.validation import as_examples


@dataclass(frozen=True)
class Prediction:
    outputs: list
    model_version: int
    single: bool


class ModelRuntime:
    """Validates inputs and runs the served model on its device."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.device = select_device(settings.device)
        module = build_model(settings).to(self.device)
        self._served = ModelVersion(module, 0)
        self.example_shape = tuple(module.omnimind_input_shape)
        self.warm_up()

    @property
    def served(self) -> ModelVersion:
        """The ``(model, number)`` pair serving now, read as one reference."""
        return self._served

    @property
    def model_version(self) -> int:
        return self._served.number

    def warm_up(self, served: ModelVersion | None = None) -> None:
        """One forward pass so the first request does not pay for lazy init; a
        model whose output is not finite on it is refused."""
        served = served or self._served
        with torch.inference_mode():
            output = served.model(torch.zeros((1, *self.example_shape), device=self.device))
        if not bool(torch.isfinite(output).all()):
            raise CorruptModel(self.settings.model_factory, served.number, "warm-up output is not finite")

    def prepare(self, state_dict, version: int) -> ModelVersion:
        """A fresh module from the factory with ``state_dict`` strictly loaded, on
        this runtime's device and warmed up, but not serving yet. Raises
        ``IncompatibleWeights`` or ``CorruptModel``; the served model is untouched."""
        module = build_model(self.settings)
        load_into(module, state_dict)
        candidate = ModelVersion(module.to(self.device).eval(), int(version))
        self.warm_up(candidate)
        return candidate

    def swap(self, candidate: ModelVersion) -> None:
        """Serve ``candidate`` from the next request on: one reference assignment,
        so requests already running finish on the version they started with."""
        self._served = candidate

    def predict(self, inputs: Any) -> Prediction:
        batch, single = as_examples(inputs, self.example_shape, self.settings.max_batch_size)
        served = self._served  # one read: the whole request uses this version
        with torch.inference_mode():
            output = served.model(torch.from_numpy(batch).to(self.device, non_blocking=True))
        rows = output.detach().to("cpu").tolist()
        return Prediction(outputs=rows[0] if single else rows, model_version=served.number, single=single)


_runtime: ModelRuntime | None = None
_runtime_pid: int | None = None
_lock = threading.Lock()


def get_runtime(settings: Settings) -> ModelRuntime:
    """The process's runtime, built on first use (thread-safe, fork-aware)."""
    global _runtime, _runtime_pid
    runtime = _runtime
    if runtime is not None and _runtime_pid == os.getpid():
        return runtime
    with _lock:
        if _runtime is None or _runtime_pid != os.getpid():
            # A runtime inherited through fork may hold CUDA state: rebuild.
            _runtime = ModelRuntime(settings)
            _runtime_pid = os.getpid()
        return _runtime
