"""The pure Raft core (etcd-io/raft's ``raft`` package without its runners): no sockets, clocks, threads or
event loop. :class:`RaftCore` (``raft.py``, the whole protocol in one class, as etcd keeps ``raft.go``) takes
``tick`` and ``step`` and hands back a :class:`Ready` (``ready.py``). Beside it only pure pieces: ``log.py`` and
``progress.py`` are the log and the leader's view of each follower; ``configuration.py`` the configurations and
the single-change rule (etcd's ``confchange``); ``messages.py`` the wire types; ``state_machine.py`` what
committed entries are applied to; ``errors.py`` the errors of the whole package.

The runners beside this package drive it: ``node.py`` (asyncio), ``transport/``, ``storage/`` and
``simulation.py``.
"""

from .configuration import Configuration
from .errors import (
                     InvariantViolation,
                     MalformedMessage,
                     NotLeader,
                     ProposalDropped,
                     RaftConfigError,
                     RaftError,
                     RaftStopped,
                     StorageCorruptError,
)
from .messages import LogEntry, Message, MessageType, Snapshot
from .raft import RaftCore
from .ready import HardState, Ready, Role, SoftState
from .state_machine import KeyValueStateMachine, StateMachine

__all__ = [
    "Configuration", "HardState", "InvariantViolation", "KeyValueStateMachine", "LogEntry", "MalformedMessage", "Message",
    "MessageType", "NotLeader", "ProposalDropped", "RaftConfigError", "RaftCore", "RaftError", "RaftStopped",
    "Ready", "Role", "SoftState", "Snapshot", "StateMachine", "StorageCorruptError",
]
