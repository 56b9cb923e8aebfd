"""Backlog and utilisation per capability queue (omnimind.scaling.autoscale), without I/O."""
from omnimind.scaling.autoscale import QueueSignal, queue_signals, worker_queue_load
from omnimind.scaling.node_info import NodeInfo, NodeStatus


def node(name, caps, concurrency, load, status=NodeStatus.HEALTHY):
    return NodeInfo(name, "10.0.0.1", 0, caps, status=status, concurrency=concurrency, queue_load=load)


def test_signals_sum_live_workers_per_queue():
    nodes = [
        node("a", ["inference"], 4, {"inference": {"reserved": 2, "active": 4}}),
        node("b", ["inference", "memory"], 2, {"inference": {"reserved": 0, "active": 1},
                                               "memory": {"reserved": 0, "active": 1}}),
        node("c", ["inference"], 8, {"inference": {"reserved": 5, "active": 8}}, NodeStatus.UNREACHABLE),
        node("d", ["inference"], 2, {}, NodeStatus.DEGRADED),  # an older worker: no counts, its slots count
    ]
    signals = queue_signals({"inference": 10, "memory": 0, "agents": 3}, nodes)
    assert signals["inference"] == QueueSignal("inference", queued=10, reserved=2, active=5, capacity=8)
    assert signals["inference"].backlog == 12 and signals["inference"].utilisation == 7 / 8
    assert signals["memory"].utilisation == 0.5 and signals["memory"].backlog == 0
    # Nobody consumes agents: the backlog is all there is to scale from zero on.
    assert signals["agents"].as_dict() == {"queue": "agents", "queued": 3, "reserved": 0, "active": 0,
                                           "capacity": 0, "backlog": 3, "utilisation": 0.0}


def test_worker_counts_split_reserved_from_active():
    reserved = ["inference"] * 5 + ["memory", "w@h.dq2", None]
    active = ["inference"] * 2 + ["w@h.dq2"]
    assert worker_queue_load(reserved, active, ["inference", "memory"]) == {
        "inference": {"reserved": 3, "active": 2}, "memory": {"reserved": 1, "active": 0}}
    # A request counted active a moment before it shows as reserved never goes negative.
    assert worker_queue_load([], ["inference"], ["inference"]) == {"inference": {"reserved": 0, "active": 1}}


def test_memory_store_keeps_the_heartbeat_counts():
    from omnimind.scaling.registry_store.memory import MemoryRegistryStore

    store = MemoryRegistryStore(clock=lambda: 100.0)
    store.register(NodeInfo("a", "10.0.0.1", 0, ["inference"]))
    assert store.heartbeat("a", 0.5, 1.0, queue_load={"inference": {"reserved": 1, "active": 1}})
    assert store.heartbeat("a", 0.5, 1.0)  # None keeps the last counts
    assert store.snapshot()[1][0].queue_load == {"inference": {"reserved": 1, "active": 1}}
