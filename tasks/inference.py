"""Tasks on the ``inference`` queue."""
from __future__ import annotations

from typing import Any

from omnimind.app import task
from omnimind.errors import InvalidInput
from workers.context import node_id
from workers.services import serving_runtime



@task(name="tasks.inference.predict", throws=(InvalidInput,))
def predict(inputs: Any = None) -> dict:
    """Run the served model on one example or a batch.

    Returns ``{"outputs": ..., "model_version": int, "node_id": str}``; for a
    single example ``outputs`` is that example's output, for a batch a list. A
    regression output is in target units; a classifier's is ``{"label",
    "probabilities", "top_k"}``, its probabilities in the order of ``"labels"``.
    With dynamic batching on, ``"batch": {"id": int, "examples": int}`` names the
    forward pass it shared (ids count per serving process) and its size.
    Bad input raises ``omnimind.errors.InvalidInput`` (the worker keeps serving).
    """
    prediction = serving_runtime().predict(inputs)
    result = {"outputs": prediction.outputs, "model_version": prediction.model_version, "node_id": node_id()}
    if prediction.labels is not None:
        result["labels"] = prediction.labels
    if prediction.batch_id:
        result["batch"] = {"id": prediction.batch_id, "examples": prediction.batch_examples}
    return result


@task(name="tasks.inference.noop")
def noop() -> None:
    """Does nothing: the baseline that benchmarks measure ``predict`` against,
    and a liveness probe for the inference queue."""
    return None


@task(name="tasks.inference.device_memory")
def device_memory() -> dict:
    """A debug probe: the serving process's device memory now (``torch.cuda.memory_allocated``
    and ``memory_reserved`` in bytes on CUDA, ``None`` on a CPU), its RSS and the version it
    serves. ``benchmarks/gpu_check.py`` reads it before and after 100 hot swaps."""
    return {**serving_runtime().device_memory(), "node_id": node_id()}
