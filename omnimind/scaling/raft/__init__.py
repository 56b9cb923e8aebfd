"""OmniMind's Raft in two layers, as etcd keeps its transport outside the core:

- ``core/``: the pure, deterministic core (etcd-io/raft's shape: ``tick``/``step`` produce a ``Ready``): the
  roles, the log, progress, messages, the state machine interface and the errors;
- the runners beside it: the asyncio ``RaftNode`` with the seed's API (``node.py``, with ``proposals.py`` and
  ``notifications.py``), durable ``storage/``, authenticated ``transport/`` and the ``simulation.py`` cluster.

Wiring a production member (what a worker bootstep does)::

    peers = parse_peer_addresses("n1=10.0.0.1:7001,n2=10.0.0.2:7001,n3=10.0.0.3:7001")
    node = RaftNode("n1", list(peers),
                    transport=TcpTransport("n1", peers, secret=get_settings().raft_secret),
                    storage=FileStorage("/var/lib/omnimind/raft/n1"),
                    state_machine=my_state_machine)
    node.add_leadership_listener(lambda leader_id, term: ...)  # start/stop the schedule on leadership
    await node.start()
    entry = await node.propose({"op": "set", "key": "slot", "value": 42})  # (entry.term, entry.index) fences
    await node.stop(transfer_leadership=True)  # graceful shutdown hands leadership over first

Membership changes one member at a time, on the leader (``membership.py``; the new member runs with
``join=True``): ``await add_member(node, "n4", "10.0.0.4:7001")`` (a learner, promoted once caught up) and
``await remove_member(node, "n3")``. The configuration lives in the log, so restarts keep it.

Configuration mistakes (duplicate or missing member ids, an unusable data directory, an empty secret, a port
that cannot be bound) raise :class:`RaftConfigError` before the member joins.

>>> from omnimind.scaling.raft import NodeState
>>> [state.value for state in NodeState]
['follower', 'candidate', 'leader']
"""

from .core import (
                   Configuration,
                   HardState,
                   InvariantViolation,
                   KeyValueStateMachine,
                   LogEntry,
                   MalformedMessage,
                   Message,
                   MessageType,
                   NotLeader,
                   ProposalDropped,
                   RaftConfigError,
                   RaftCore,
                   RaftError,
                   RaftStopped,
                   Ready,
                   Role,
                   Snapshot,
                   SoftState,
                   StateMachine,
                   StorageCorruptError,
)
import importlib
from typing import Any

#: The runners' names, imported on first access (PEP 562) so that importing the pure
#: ``core`` (which imports this package first) loads no storage, transport or asyncio runner.
_RUNNERS = {
    "add_member": ".membership", "remove_member": ".membership",
    "NodeState": ".node", "RaftNode": ".node",
    "SimulatedCluster": ".simulation",
    "FileStorage": ".storage", "MemoryStorage": ".storage", "PersistedState": ".storage", "RaftStorage": ".storage",
    "InProcessNetwork": ".transport", "InProcessTransport": ".transport", "RaftTransport": ".transport",
    "TcpTransport": ".transport", "parse_peer_addresses": ".transport",
}


def __getattr__(name: str) -> Any:
    if name in _RUNNERS:
        value = getattr(importlib.import_module(_RUNNERS[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Configuration", "FileStorage", "HardState", "InProcessNetwork", "InProcessTransport", "InvariantViolation",
    "KeyValueStateMachine", "LogEntry", "MalformedMessage", "MemoryStorage", "Message", "MessageType",
    "NodeState", "NotLeader", "PersistedState", "ProposalDropped", "RaftConfigError", "RaftCore", "RaftError",
    "RaftNode", "RaftStopped", "RaftStorage", "RaftTransport", "Ready", "Role", "SimulatedCluster", "SoftState",
    "Snapshot", "StateMachine", "StorageCorruptError", "TcpTransport", "add_member", "parse_peer_addresses", "remove_member",
]
