"""One suite, two backends: the in-memory twin and real qdrant-client local mode."""
import uuid

import numpy as np
import pytest

from omnimind.errors import InvalidInput
from omnimind.memory import InMemoryVectorMemory
from omnimind.memory.qdrant import QdrantMemory

LIMITS = dict(max_payload_bytes=256, max_batch=64, max_k=50)


@pytest.fixture(params=["inmemory", "qdrant"])
def memory(request, tmp_path):
    if request.param == "inmemory":
        backend = InMemoryVectorMemory(**LIMITS)
    else:
        backend = QdrantMemory(path=str(tmp_path / "qdrant"), **LIMITS)
    yield backend
    backend.close()


def reason(excinfo):
    return excinfo.value.reason


def brute_force(vectors, query, distance):
    v, q = np.asarray(vectors, float), np.asarray(query, float)
    if distance == "euclid":
        scores = np.linalg.norm(v - q, axis=1)
        return np.argsort(scores), scores
    if distance == "cosine":
        v = v / np.linalg.norm(v, axis=1, keepdims=True)
        q = q / np.linalg.norm(q)
    scores = v @ q
    return np.argsort(-scores), scores


@pytest.mark.parametrize("distance", ["cosine", "euclid", "dot"])
def test_search_returns_nearest_ids_in_order(memory, distance):
    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((60, 8)).astype(np.float32)
    ids = list(range(100, 160))
    assert memory.create_collection("c", 8, distance) is True
    assert memory.upsert("c", ids, vectors.tolist(), [{"i": i} for i in ids]) == 60
    assert memory.count("c") == 60
    for query in rng.standard_normal((5, 8)):
        order, scores = brute_force(vectors, query, distance)
        hits = memory.search("c", query.tolist(), k=7)
        assert [h.id for h in hits] == [ids[i] for i in order[:7]]
        assert [h.score for h in hits] == pytest.approx([float(scores[i]) for i in order[:7]], rel=1e-4, abs=1e-5)
        assert [h.payload for h in hits] == [{"i": ids[i]} for i in order[:7]]


def test_cosine_ignores_length_euclid_does_not(memory):
    memory.create_collection("cos", 2, "cosine")
    memory.create_collection("euc", 2, "euclid")
    for name in ("cos", "euc"):
        memory.upsert(name, [1, 2], [[10.0, 0.0], [0.8, 0.6]])
    assert [h.id for h in memory.search("cos", [1.0, 0.0], k=2)] == [1, 2]
    assert [h.id for h in memory.search("euc", [1.0, 0.0], k=2)] == [2, 1]
    assert memory.search("cos", [1.0, 0.0], k=1)[0].score == pytest.approx(1.0, abs=1e-6)


def test_filters(memory):
    memory.create_collection("f", 2, "euclid")
    memory.upsert(
        "f",
        [1, 2, 3, 4],
        [[0, 0], [1, 0], [2, 0], [3, 0]],
        [
            {"kind": "a", "n": 1, "tags": ["x", "y"], "meta": {"lang": "en"}, "ok": True},
            {"kind": "b", "n": 2, "tags": ["y"], "meta": {"lang": "pt"}, "ok": False},
            {"kind": "a", "n": 3, "tags": [], "meta": {"lang": "pt"}, "ok": True},
            {"kind": "c", "n": 4.5},
        ],
    )

    def ids(filter):
        return [h.id for h in memory.search("f", [0, 0], k=10, filter=filter)]

    assert ids(None) == [1, 2, 3, 4]
    assert ids({}) == [1, 2, 3, 4]
    assert ids({"kind": "a"}) == [1, 3]
    assert ids({"n": 2}) == [2]
    assert ids({"ok": True}) == [1, 3]
    assert ids({"kind": ["b", "c"]}) == [2, 4]
    assert ids({"n": {"gte": 2, "lt": 4}}) == [2, 3]
    assert ids({"n": {"gt": 4}}) == [4]
    assert ids({"tags": "y"}) == [1, 2]
    assert ids({"meta.lang": "pt"}) == [2, 3]
    assert ids({"kind": "a", "meta.lang": "pt"}) == [3]
    assert ids({"kind": "zzz"}) == []
    for bad in ("kind", {"n": {"near": 1}}, {"n": {"gt": "x"}}, {"n": 1.5}, {"n": []}, {"n": [1, "a"]}, {"": 1}):
        with pytest.raises(InvalidInput) as e:
            memory.search("f", [0, 0], k=1, filter=bad)
        assert reason(e) == "bad_filter", bad


def test_delete_and_replace(memory):
    memory.create_collection("d", 2, "euclid")
    memory.upsert("d", [1, 2, 3], [[0, 0], [1, 1], [2, 2]], [{"v": 1}, {"v": 2}, {"v": 3}])
    assert memory.delete("d", [2, 99]) == 2  # unknown ids are ignored
    assert [h.id for h in memory.search("d", [1, 1], k=5)] == [1, 3]
    assert memory.count("d") == 2
    memory.delete("d", 1)  # a single id is fine too
    assert memory.count("d") == 1
    # Upsert replaces vector and payload as a whole.
    memory.upsert("d", [3], [[9, 9]], [{"w": 1}])
    (hit,) = memory.search("d", [9, 9], k=1)
    assert (hit.id, hit.payload) == (3, {"w": 1}) and hit.score == pytest.approx(0.0, abs=1e-6)


def test_uuid_ids(memory):
    memory.create_collection("u", 2, "dot")
    point = str(uuid.uuid4())
    memory.upsert("u", [point.upper(), 5], [[1, 0], [0, 1]])
    assert [h.id for h in memory.search("u", [1, 0], k=2)] == [point, 5]


def test_collections(memory):
    assert memory.create_collection("k", 3, "cosine") is True
    assert memory.create_collection("k", 3, "COSINE") is False  # idempotent
    with pytest.raises(InvalidInput) as e:
        memory.create_collection("k", 4, "cosine")
    assert reason(e) == "conflict"
    cases = [
        (("x", 3, "manhattan"), "bad_value"),
        (("x", 0, "cosine"), "bad_value"),
        (("x", "3", "cosine"), "type"),
        (("bad name!", 3, "cosine"), "bad_value"),
        ((None, 3, "cosine"), "missing_field"),
        ((7, 3, "cosine"), "type"),
    ]
    for args, expected in cases:
        with pytest.raises(InvalidInput) as e:
            memory.create_collection(*args)
        assert reason(e) == expected, args


def test_dimension_and_vector_errors(memory):
    memory.create_collection("v", 3, "cosine")
    cases = [
        (lambda: memory.upsert("v", [1], [[1, 2]]), "shape"),
        (lambda: memory.upsert("v", [1], [1, 2, 3]), "shape"),
        (lambda: memory.upsert("v", [1, 2], [[1, 2, 3]]), "shape"),
        (lambda: memory.upsert("v", [1], [[1, 2, 3]], [{}, {}]), "shape"),
        (lambda: memory.upsert("v", [1], [[1, float("nan"), 3]]), "non_finite"),
        (lambda: memory.upsert("v", [1], [["a", "b", "c"]]), "type"),
        (lambda: memory.upsert("v", [1], [[0, 0, 0]]), "bad_value"),
        (lambda: memory.upsert("v", list(range(65)), [[1, 2, 3]] * 65), "batch_too_large"),
        (lambda: memory.upsert("v", [], []), "empty"),
        (lambda: memory.search("v", [1, 2], k=1), "shape"),
        (lambda: memory.search("v", [[1, 2, 3]], k=1), "shape"),
        (lambda: memory.search("v", None, k=1), "missing_field"),
        (lambda: memory.search("v", [1, 2, 3], k=0), "bad_value"),
        (lambda: memory.search("v", [1, 2, 3], k=51), "bad_value"),
        (lambda: memory.search("v", [1, 2, 3], k="3"), "type"),
    ]
    for call, expected in cases:
        with pytest.raises(InvalidInput) as e:
            call()
        assert reason(e) == expected, e.value
    assert memory.count("v") == 0


@pytest.mark.parametrize("bad", [-1, 1.5, "not-a-uuid", True, None, 2**64, [1]])
def test_bad_ids(memory, bad):
    memory.create_collection("i", 2, "euclid")
    with pytest.raises(InvalidInput) as e:
        memory.upsert("i", [bad], [[1, 2]])
    assert reason(e) in ("bad_id", "missing_field")
    with pytest.raises(InvalidInput) as e:
        memory.delete("i", [bad])
    assert reason(e) in ("bad_id", "missing_field")


def test_duplicate_ids_in_one_upsert(memory):
    memory.create_collection("i", 2, "euclid")
    with pytest.raises(InvalidInput) as e:
        memory.upsert("i", [1, 1], [[1, 2], [3, 4]])
    assert reason(e) == "bad_id"


def test_unknown_collection(memory):
    for call in (
        lambda: memory.upsert("nope", [1], [[1, 2]]),
        lambda: memory.search("nope", [1, 2], k=1),
        lambda: memory.delete("nope", [1]),
        lambda: memory.count("nope"),
    ):
        with pytest.raises(InvalidInput) as e:
            call()
        assert reason(e) == "unknown_collection"


def test_payload_limit(memory):
    memory.create_collection("p", 2, "euclid")
    fits = {"s": "x" * (256 - len('{"s": ""}'))}
    memory.upsert("p", [1], [[1, 2]], [fits])
    with pytest.raises(InvalidInput) as e:
        memory.upsert("p", [2], [[1, 2]], [{"s": "x" * 300}])
    assert reason(e) == "payload_too_large"
    for bad in ("text", [1, 2], {"f": float("nan")}, {"o": object()}):
        with pytest.raises(InvalidInput) as e:
            memory.upsert("p", [3], [[1, 2]], [bad])
        assert reason(e) == "type", bad
    assert [h.id for h in memory.search("p", [1, 2], k=5)] == [1]


def test_qdrant_local_persists_across_reopen(tmp_path):
    path = str(tmp_path / "q")
    first = QdrantMemory(path=path)
    first.create_collection("keep", 2, "euclid")
    first.upsert("keep", [1, 2], [[0, 0], [5, 5]], [{"a": 1}, {"a": 2}])
    first.close()
    second = QdrantMemory(path=path)
    try:
        hits = second.search("keep", [4, 4], k=2)
        assert [(h.id, h.payload) for h in hits] == [(2, {"a": 2}), (1, {"a": 1})]
        assert second.create_collection("keep", 2, "euclid") is False
    finally:
        second.close()


def test_qdrant_local_path_is_exclusive(tmp_path):
    path = str(tmp_path / "q")
    first = QdrantMemory(path=path)
    try:
        with pytest.raises(RuntimeError, match="already accessed"):
            QdrantMemory(path=path)
    finally:
        first.close()
