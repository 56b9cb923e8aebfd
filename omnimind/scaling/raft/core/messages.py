"""Log entries, snapshots and the wire messages Raft members exchange.

Messages are plain frozen dataclasses; ``to_dict``/``from_dict`` give the JSON-compatible form the TCP
transport sends, and ``from_dict`` validates untrusted input strictly.

>>> entry = LogEntry(term=2, index=7, command={"op": "set", "key": "k", "value": 1})
>>> message = Message(MessageType.APPEND, sender="n1", recipient="n2", term=2, index=6, log_term=2,
...                   entries=(entry,), commit=5)
>>> Message.from_dict(message.to_dict()) == message
True
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from .configuration import CONFIG_ENTRY, NORMAL_ENTRY, Configuration
from .errors import MalformedMessage

#: ``Message.context`` of a vote request sent because the leader handed leadership over (TimeoutNow); such a
#: request bypasses the leader lease of the voters.
CAMPAIGN_TRANSFER = "transfer"


class MessageType(str, enum.Enum):
    """Kinds of messages on the wire (local events such as ticks and proposals are method calls instead).

    >>> MessageType("pre_vote") is MessageType.PRE_VOTE
    True
    """

    APPEND = "append"
    APPEND_RESPONSE = "append_response"
    HEARTBEAT = "heartbeat"
    HEARTBEAT_RESPONSE = "heartbeat_response"
    PRE_VOTE = "pre_vote"
    PRE_VOTE_RESPONSE = "pre_vote_response"
    VOTE = "vote"
    VOTE_RESPONSE = "vote_response"
    INSTALL_SNAPSHOT = "install_snapshot"
    TIMEOUT_NOW = "timeout_now"


@dataclass(frozen=True)
class LogEntry:
    """One replicated log entry; ``command`` is any JSON-compatible value (``None`` marks a leader's no-op).
    ``kind`` is ``"normal"``, or ``"config"`` for a membership configuration (``configuration.py``), which the
    runner does not hand to the state machine.

    >>> LogEntry.from_dict({"term": 1, "index": 1, "command": "noop"})
    LogEntry(term=1, index=1, command='noop', kind='normal')
    """

    term: int
    index: int
    command: Any = None
    kind: str = NORMAL_ENTRY

    @property
    def is_config(self) -> bool:
        return self.kind == CONFIG_ENTRY

    def to_dict(self) -> dict[str, Any]:
        data = {"term": self.term, "index": self.index, "command": self.command}
        if self.kind != NORMAL_ENTRY:  # logs written before membership changes existed stay readable as they are
            data["kind"] = self.kind
        return data

    @classmethod
    def from_dict(cls, data: Any) -> LogEntry:
        fields = _require_mapping(data, "entry")
        kind = fields.get("kind", NORMAL_ENTRY)
        if kind not in (NORMAL_ENTRY, CONFIG_ENTRY):
            raise MalformedMessage(f"unknown entry kind {kind!r}")
        command = fields.get("command")
        if kind == CONFIG_ENTRY:
            Configuration.from_dict(command)  # validated here, so a core never meets a malformed configuration
        return cls(_non_negative_int(fields, "term"), _non_negative_int(fields, "index"), command, kind)


@dataclass(frozen=True)
class Snapshot:
    """The applied state machine at ``index`` (whose entry has ``term``); ``data`` is JSON-compatible.
    ``config`` is the membership configuration in effect at ``index`` (``Configuration.to_dict`` form; ``None``
    while the log never changed membership), so compaction never forgets who the members are.

    >>> Snapshot.from_dict(Snapshot(index=10, term=3, data={"k": 1}).to_dict())
    Snapshot(index=10, term=3, data={'k': 1}, config=None)
    """

    index: int
    term: int
    data: Any = None
    config: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        data = {"index": self.index, "term": self.term, "data": self.data}
        if self.config is not None:
            data["config"] = self.config
        return data

    @classmethod
    def from_dict(cls, data: Any) -> Snapshot:
        fields = _require_mapping(data, "snapshot")
        config = fields.get("config")
        if config is not None:
            config = Configuration.from_dict(config).to_dict()
        return cls(_non_negative_int(fields, "index"), _non_negative_int(fields, "term"), fields.get("data"), config)


@dataclass(frozen=True)
class Message:
    """A Raft message, shaped like etcd-io/raft's ``raftpb.Message``.

    ``index``/``log_term`` describe the entry preceding ``entries`` (appends), the candidate's last entry (votes)
    or the acknowledged/rejected index (append responses, with ``reject_hint`` and ``log_term`` used for fast
    backtracking).

    >>> Message(MessageType.HEARTBEAT, sender="n1", recipient="n2", term=3).type.value
    'heartbeat'
    """

    type: MessageType
    sender: str
    recipient: str
    term: int = 0
    log_term: int = 0
    index: int = 0
    entries: tuple[LogEntry, ...] = ()
    commit: int = 0
    reject: bool = False
    reject_hint: int = 0
    snapshot: Snapshot | None = None
    context: str = ""

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "type": self.type.value,
            "sender": self.sender,
            "recipient": self.recipient,
            "term": self.term,
            "log_term": self.log_term,
            "index": self.index,
            "commit": self.commit,
            "reject": self.reject,
            "reject_hint": self.reject_hint,
            "context": self.context,
        }
        if self.entries:
            data["entries"] = [entry.to_dict() for entry in self.entries]
        if self.snapshot is not None:
            data["snapshot"] = self.snapshot.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: Any) -> Message:
        """Decode and validate an untrusted dict; raises :class:`MalformedMessage` on anything unexpected."""
        fields = _require_mapping(data, "message")
        try:
            message_type = MessageType(fields.get("type"))
        except ValueError:
            raise MalformedMessage(f"unknown message type {fields.get('type')!r}") from None
        raw_entries = fields.get("entries", [])
        if not isinstance(raw_entries, list):
            raise MalformedMessage("'entries' must be a list")
        raw_snapshot = fields.get("snapshot")
        reject = fields.get("reject", False)
        if not isinstance(reject, bool):
            raise MalformedMessage("'reject' must be a boolean")
        return cls(
            type=message_type,
            sender=_string(fields, "sender"),
            recipient=_string(fields, "recipient"),
            term=_non_negative_int(fields, "term"),
            log_term=_non_negative_int(fields, "log_term"),
            index=_non_negative_int(fields, "index"),
            entries=tuple(LogEntry.from_dict(entry) for entry in raw_entries),
            commit=_non_negative_int(fields, "commit"),
            reject=reject,
            reject_hint=_non_negative_int(fields, "reject_hint"),
            snapshot=None if raw_snapshot is None else Snapshot.from_dict(raw_snapshot),
            context=_string(fields, "context", default=""),
        )


def _require_mapping(data: Any, what: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise MalformedMessage(f"{what} must be a JSON object, got {type(data).__name__}")
    return data


def _non_negative_int(fields: dict[str, Any], name: str) -> int:
    value = fields.get(name, 0)
    # bool is an int subclass; a JSON 'true' where a number belongs is malformed input.
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise MalformedMessage(f"{name!r} must be a non-negative integer, got {value!r}")
    return value


def _string(fields: dict[str, Any], name: str, default: str | None = None) -> str:
    value = fields.get(name, default)
    if not isinstance(value, str):
        raise MalformedMessage(f"{name!r} must be a string, got {value!r}")
    return value
