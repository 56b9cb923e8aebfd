"""Vector memory through real worker processes and real qdrant-client local mode."""
import pytest

from omnimind.errors import InvalidInput
from tests.conftest import Worker
from tests.helpers import wait_until


def call(app, op, **kwargs):
    return app.send_task(f"tasks.memory.{op}", kwargs=kwargs).get(timeout=20)


def memory_worker(start_worker, name, data_dir, **env):
    return start_worker(name, queues="memory", pool="solo", concurrency=1, OMNIMIND_DATA_DIR=data_dir, **env)


def test_upsert_search_delete_through_the_farm(start_worker, celery_app, tmp_path):
    worker = memory_worker(start_worker, "mem1", tmp_path / "data")
    created = call(celery_app, "create_collection", name="notes", dim=3, distance="euclid")
    assert created == {"collection": "notes", "dim": 3, "distance": "euclid", "created": True,
                       "node_id": worker.hostname}
    assert call(celery_app, "create_collection", name="notes", dim=3, distance="euclid")["created"] is False
    assert call(celery_app, "upsert", collection="notes", id=1, vector=[0, 0, 0], payload={"t": "origin"})["upserted"] == 1
    batch = call(celery_app, "upsert", collection="notes", ids=[2, 3, 4],
                 vectors=[[1, 0, 0], [2, 0, 0], [3, 0, 0]], payloads=[{"t": "a"}, {"t": "b"}, {"t": "a"}])
    assert batch["upserted"] == 3
    found = call(celery_app, "search", collection="notes", vector=[2.2, 0, 0], k=3)
    assert [h["id"] for h in found["hits"]] == [3, 4, 2]
    assert [h["score"] for h in found["hits"]] == pytest.approx([0.2, 0.8, 1.2], abs=1e-5)
    assert found["hits"][0]["payload"] == {"t": "b"} and found["distance"] == "euclid"
    filtered = call(celery_app, "search", collection="notes", vector=[2.2, 0, 0], k=3, filter={"t": "a"})
    assert [h["id"] for h in filtered["hits"]] == [4, 2]
    assert call(celery_app, "delete", collection="notes", ids=[3, 4])["deleted"] == 2
    assert [h["id"] for h in call(celery_app, "search", collection="notes", vector=[2.2, 0, 0], k=3)["hits"]] == [2, 1]
    assert call(celery_app, "count", collection="notes")["count"] == 2


BAD = [
    ("upsert", dict(collection="notes", id=9, vector=[1, 2]), "shape"),
    ("upsert", dict(collection="ghost", id=9, vector=[1, 2, 3]), "unknown_collection"),
    ("upsert", dict(collection="notes", id=9, vector=[1, 2, 3], payload={"s": "x" * 200}), "payload_too_large"),
    ("upsert", dict(collection="notes", id="nine", vector=[1, 2, 3]), "bad_id"),
    ("upsert", dict(collection="notes", vector=[1, 2, 3]), "missing_field"),
    ("search", dict(collection="notes", vector=[1, 2, 3, 4], k=1), "shape"),
    ("search", dict(collection="ghost", vector=[1, 2, 3], k=1), "unknown_collection"),
    ("search", dict(collection="notes", vector=[1, 2, 3], k=1, filter={"t": {"about": 1}}), "bad_filter"),
    ("delete", dict(collection="notes", ids=[-3]), "bad_id"),
    ("create_collection", dict(name="notes", dim=4, distance="euclid"), "conflict"),
    ("create_collection", dict(name="other", dim=4, distance="hamming"), "bad_value"),
]


def test_bad_input_gets_typed_errors_and_worker_keeps_serving(start_worker, celery_app, tmp_path):
    memory_worker(start_worker, "mem-bad", tmp_path / "data", OMNIMIND_MEMORY_MAX_PAYLOAD_BYTES=128)
    call(celery_app, "create_collection", name="notes", dim=3, distance="euclid")
    call(celery_app, "upsert", collection="notes", id=1, vector=[1, 2, 3])
    for op, kwargs, expected in BAD:
        with pytest.raises(InvalidInput) as caught:
            call(celery_app, op, **kwargs)
        assert caught.value.reason == expected, (op, kwargs, caught.value)
        assert [h["id"] for h in call(celery_app, "search", collection="notes", vector=[1, 2, 3], k=1)["hits"]] == [1]


def test_memory_survives_a_worker_restart(start_worker, celery_app, tmp_path):
    data = tmp_path / "data"
    first = memory_worker(start_worker, "mem-a", data)
    call(celery_app, "create_collection", name="keep", dim=2, distance="cosine")
    call(celery_app, "upsert", collection="keep", ids=[1, 2], vectors=[[1, 0], [0, 1]], payloads=[{"n": 1}, {"n": 2}])
    assert first.stop() == 0
    second = memory_worker(start_worker, "mem-b", data)
    found = call(celery_app, "search", collection="keep", vector=[0.1, 1.0], k=2)
    assert [(h["id"], h["payload"]) for h in found["hits"]] == [(2, {"n": 2}), (1, {"n": 1})]
    assert found["node_id"] == second.hostname


def refused(tmp_path, name, data, pool, concurrency, **env) -> Worker:
    worker = Worker(name, "memory", pool, concurrency, {"OMNIMIND_DATA_DIR": str(data), **env}, tmp_path / f"{name}.log")
    wait_until(lambda: worker.proc.poll() is not None, timeout=60, message=f"{name} to exit")
    worker.stop()
    return worker


def test_embedded_memory_is_served_by_exactly_one_process(start_worker, celery_app, tmp_path):
    data = tmp_path / "data"
    holder = memory_worker(start_worker, "mem-one", data)
    second = refused(tmp_path, "mem-two", data, "solo", 1)
    assert second.proc.returncode != 0
    out = second.output()
    assert "refusing to consume the 'memory' queue" in out and f"pid {holder.pid}" in out
    assert "OMNIMIND_QDRANT_URL" in out
    # A prefork pool of several children is refused even on a free data directory.
    forked = refused(tmp_path, "mem-fork", tmp_path / "other", "prefork", 2)
    assert forked.proc.returncode != 0
    assert "prefork pool of concurrency 2" in forked.output()
    # The holder kept serving throughout.
    assert call(celery_app, "create_collection", name="x", dim=2, distance="dot")["node_id"] == holder.hostname


def test_with_a_server_url_several_memory_workers_may_run(start_worker, tmp_path):
    # No Qdrant server is needed to show the rule is off: the backend is built on the first task.
    url = "http://127.0.0.1:9"
    a = memory_worker(start_worker, "mem-s1", tmp_path / "data", OMNIMIND_QDRANT_URL=url)
    b = memory_worker(start_worker, "mem-s2", tmp_path / "data", OMNIMIND_QDRANT_URL=url)
    assert a.proc.poll() is None and b.proc.poll() is None
