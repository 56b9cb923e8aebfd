"""The model a worker process serves, built once per process.

The runtime is built lazily in the process that runs tasks: in a prefork
worker that is each pool child (after the fork, so CUDA is initialised where it
is used); with the solo or threads pool it is the worker process itself.
Serving reads ``(model, version)`` as one reference, so a later hot swap (one
assignment) never mixes the weights of two versions inside a request.

With ``OMNIMIND_BATCHING`` on (the default) concurrent requests of one process are
validated alone, then merged into one forward pass by a
:class:`~omnimind.models.batching.DynamicBatcher` keyed by ``(version, example
shape)``: a batch never mixes versions, and a request keeps the version it read
when it arrived even if a swap lands while it waits. A request whose output rows
are not finite fails alone with ``InvalidInput("non_finite_output")``.

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

import numpy as np
import psutil
import torch

from omnimind.config import Settings
from omnimind.errors import InvalidInput
from omnimind.learning.preprocessing import decode_outputs
from omnimind.learning.spec import ModelSpec
from omnimind.learning.versions import ModelVersion
from omnimind.models.batching import DynamicBatcher
from omnimind.models.errors import CorruptModel
from omnimind.models.factory import build_model, select_device
from omnimind.models.serialization import load_into
from omnimind.observability import logging as log_format
from omnimind.observability import metrics
from omnimind.validation import as_examples


@dataclass(frozen=True)
class Prediction:
    outputs: list
    model_version: int
    single: bool
    #: The forward pass (per process) that served it and its size in examples; 0 unbatched.
    batch_id: int = 0
    batch_examples: int = 0
    #: A classifier's labels, in the order of each output's ``probabilities``; None for regression.
    labels: list | None = None


class ModelRuntime:
    """Validates inputs and runs the served model on its device."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.device = select_device(settings.device)
        # On CPU the input/output copies are no-ops that still cost a dispatch each per request.
        self._on_cpu = self.device.type == "cpu"
        self.spec = ModelSpec.from_settings(settings)
        module = build_model(settings).to(self.device)
        self._served = ModelVersion(module, 0)
        self.example_shape = tuple(module.omnimind_input_shape)
        self.example_dtype = module.omnimind_input_dtype
        #: Named inputs (None: one unnamed float vector, validated by ``as_examples``).
        self.signature = self.spec.inputs
        self.batcher: DynamicBatcher | None = None
        if settings.batching:
            self.batcher = DynamicBatcher(
                self._forward, max_size=settings.batch_max_size, max_delay=settings.batch_max_delay_ms / 1000.0,
                check=_finite_rows, observe=_observe_batch,
            )
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
            output = served.model(torch.zeros((1, *self.example_shape), dtype=self.example_dtype, device=self.device))
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

    def examples(self, inputs: Any) -> tuple[np.ndarray, bool]:
        """``(batch, single)``: a request as this model's input batch, or ``InvalidInput``."""
        if self.signature is not None:
            return self.signature.encode(inputs, self.settings.max_batch_size)
        return as_examples(inputs, self.example_shape, self.settings.max_batch_size)

    def predict(self, inputs: Any) -> Prediction:
        try:
            batch, single = self.examples(inputs)
        except InvalidInput:
            if self.batcher is not None:
                self.batcher.withdraw()  # it was announced (workers.batching), and will not join
            raise
        served = self._served  # one read: the whole request uses this version
        if self.batcher is None:
            output = self._forward((served, batch.shape[1:]), batch)
            _finite_rows(output)
            rows, labels = decode_outputs(served.model, self.spec, output)
            return Prediction(outputs=rows[0] if single else rows, model_version=served.number, single=single,
                              labels=labels)
        result = self.batcher.submit((served, batch.shape[1:]), batch)
        # Outputs in target units, or a classifier's probabilities, with this version's own preprocessing state.
        rows, labels = decode_outputs(served.model, self.spec, result.rows)
        return Prediction(outputs=rows[0] if single else rows, model_version=served.number, single=single,
                          batch_id=result.batch_id, batch_examples=result.batch_examples, labels=labels)

    def device_memory(self) -> dict:
        """What the serving device holds now, read in this process (the GPU check's
        "memory freed after swaps"): ``allocated_bytes``/``reserved_bytes`` from
        ``torch.cuda.memory_allocated``/``memory_reserved`` on CUDA, ``None`` on a CPU
        (use ``rss_bytes``, this process's resident set, there)."""
        cuda = self.device.type == "cuda"
        return {"device": str(self.device), "cuda": cuda, "model_version": self.model_version,
                "allocated_bytes": int(torch.cuda.memory_allocated(self.device)) if cuda else None,
                "reserved_bytes": int(torch.cuda.memory_reserved(self.device)) if cuda else None,
                "rss_bytes": psutil.Process().memory_info().rss}

    def _forward(self, key: tuple, rows):
        """One forward pass of ``key``'s version on ``rows`` (a NumPy batch); NumPy output."""
        served = key[0]
        with torch.inference_mode():
            tensor = torch.from_numpy(rows)
            output = served.model(tensor if self._on_cpu else tensor.to(self.device, non_blocking=True))
        # On CPU the output already is a CPU tensor: no copy to ask for.
        return output.detach().numpy() if self._on_cpu else output.detach().to("cpu").numpy()


def _finite_rows(rows) -> None:
    if not np.isfinite(rows).all():
        raise InvalidInput("non_finite_output", "the model's output for this input is NaN or infinite")


def _observe_batch(examples: int, requests: int, delays: list) -> None:
    metrics.batch_size.observe(examples)
    for delay in delays:
        metrics.batch_queue_delay_seconds.observe(delay)


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
            log_format.set_model_version_source(served_version)
        return _runtime


def served_version() -> int | None:
    """The version this process's runtime serves, None if this process built none
    (a prefork child before its first request has its parent's, which it does not serve)."""
    runtime = _runtime
    return runtime.model_version if runtime is not None and _runtime_pid == os.getpid() else None
