"""In-repo agents.

``recall_predict_store``: given an input vector, recall the nearest stored
memories of earlier inputs (``tasks.memory.search``) and predict with the
served model (``tasks.inference.predict``) -- both at once, as a Celery group
-- then store the input with its prediction as a new memory
(``tasks.memory.upsert``). Payload::

    {"inputs": [16 floats], "k": 3, "collection": "agent_memory", "tag": "optional label"}

Result: ``{"recalled": [{"id", "score", "payload"}], "outputs", "model_version",
"stored_id", "collection"}``.

>>> from omnimind.agents.context import LocalAgentContext
>>> from omnimind.memory import InMemoryVectorMemory
>>> memory = InMemoryVectorMemory()
>>> def create(name, dim, distance):
...     return {"created": memory.create_collection(name, dim, distance)}
>>> def upsert(collection, id, vector, payload):
...     return {"upserted": memory.upsert(collection, [id], [vector], [payload])}
>>> def search(collection, vector, k, filter):
...     return {"hits": [h.to_json() for h in memory.search(collection, vector, k, filter)]}
>>> ctx = LocalAgentContext("recall_predict_store", {
...     "tasks.memory.create_collection": create, "tasks.memory.upsert": upsert,
...     "tasks.memory.search": search,
...     "tasks.inference.predict": lambda inputs: {"outputs": [sum(inputs)], "model_version": 0}})
>>> first = recall_predict_store(ctx, {"inputs": [1.0, 0.0]})
>>> first["recalled"], first["outputs"]
([], [1.0])
>>> second = recall_predict_store(ctx, {"inputs": [0.9, 0.1]})
>>> [hit["id"] for hit in second["recalled"]] == [first["stored_id"]]
True
"""
from __future__ import annotations

import uuid

from omnimind.agents.registry import agent
from omnimind.errors import InvalidInput

#: Collection used when the payload names none.
DEFAULT_COLLECTION = "agent_memory"
DEFAULT_K = 3


@agent("recall_predict_store")
def recall_predict_store(context, payload: dict) -> dict:
    inputs = payload.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise InvalidInput("missing_field", "recall_predict_store needs 'inputs': a non-empty list of numbers")
    collection = payload.get("collection", DEFAULT_COLLECTION)
    k = payload.get("k", DEFAULT_K)
    context.memory_create_collection(collection, dim=len(inputs), distance="cosine")  # idempotent
    found, prediction = context.call_many([
        ("tasks.memory.search", {"collection": collection, "vector": inputs, "k": k, "filter": None}),
        ("tasks.inference.predict", {"inputs": inputs}),
    ])
    recalled = found["hits"]
    stored_id = str(uuid.uuid4())
    context.memory_upsert(
        collection,
        stored_id,
        inputs,
        {
            "outputs": prediction["outputs"],
            "model_version": prediction.get("model_version"),
            "recalled": [hit["id"] for hit in recalled],
            "tag": payload.get("tag"),
        },
    )
    return {
        "recalled": recalled,
        "outputs": prediction["outputs"],
        "model_version": prediction.get("model_version"),
        "stored_id": stored_id,
        "collection": collection,
    }
