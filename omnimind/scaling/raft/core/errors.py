"""Typed errors raised by the Raft module; every one derives from :class:`RaftError`."""

from __future__ import annotations


class RaftError(Exception):
    """Base class of every error raised by ``omnimind.scaling.raft``, so callers can catch the whole family.

    >>> all(issubclass(error, RaftError) for error in (NotLeader, RaftConfigError, StorageCorruptError))
    True
    """


class RaftConfigError(RaftError, ValueError):
    """The member was configured inconsistently and refuses to start (bad ids, bad data directory, bad secret).

    >>> isinstance(RaftConfigError("duplicate member id"), ValueError)
    True
    """


class StorageCorruptError(RaftError):
    """Persisted Raft state is damaged beyond the torn tail a crash can leave behind.

    >>> str(StorageCorruptError("log.bin: corrupt record at byte 12"))
    'log.bin: corrupt record at byte 12'
    """


class MalformedMessage(RaftError, ValueError):
    """A wire message could not be decoded into a :class:`~omnimind.scaling.raft.core.messages.Message`.

    >>> isinstance(MalformedMessage("'term' must be a non-negative integer"), ValueError)
    True
    """


class ProposalDropped(RaftError):
    """A proposal was not (or is no longer) going to be committed by this member.

    >>> issubclass(NotLeader, ProposalDropped) and issubclass(RaftStopped, ProposalDropped)
    True
    """


class NotLeader(ProposalDropped):
    """The member is not the leader; ``leader_id`` is its best guess of who is (``None`` when unknown).

    >>> NotLeader(leader_id="n2").leader_id
    'n2'
    """

    def __init__(self, message: str = "", leader_id: str | None = None) -> None:
        super().__init__(message or f"not the leader (leader hint: {leader_id!r})")
        self.leader_id = leader_id


class RaftStopped(ProposalDropped):
    """The member was stopped before the operation completed.

    >>> str(RaftStopped("raft member n1 stopped"))
    'raft member n1 stopped'
    """


class InvariantViolation(RaftError, AssertionError):
    """A Raft safety property was broken; always a bug, never an expected condition. It is an
    ``AssertionError`` so test harnesses report it as a failure.

    >>> issubclass(InvariantViolation, AssertionError)
    True
    """
