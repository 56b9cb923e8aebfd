"""File-backed durable storage: one directory per member.

Layout:

* ``hard_state.json`` — term and vote, replaced atomically (write temp, fsync, rename, fsync dir) whenever
  either changes;
* ``commit.json`` — the commit index, replaced without fsync (like etcd, which does not sync a commit-only
  change): losing it in a crash only makes the member re-learn the commit index from the leader;
* ``log.bin`` — append-only records ``[4-byte big-endian length][4-byte CRC32][JSON entry]``, fsync'd on
  every append; a conflicting suffix is cut off with ``ftruncate``. A torn or corrupt *last* record (a crash
  mid-append) is dropped on load; a corrupt record followed by more data is real damage and refuses to load;
* ``snapshot.json`` — the latest snapshot, replaced atomically; saving one rewrites ``log.bin`` without the
  entries it covers (compaction);
* ``LOCK`` — an exclusive ``flock`` so two processes never share a directory.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.errors import InvariantViolation, MalformedMessage, RaftConfigError, StorageCorruptError
from ..core.messages import LogEntry, Snapshot
from ..core.ready import HardState
from .base import PersistedState, RaftStorage

logger = logging.getLogger(__name__)

_RECORD_HEADER = struct.Struct(">II")  # body length, CRC32 of the body


@dataclass(frozen=True)
class _RecordPosition:
    index: int
    term: int
    offset: int


class FileStorage(RaftStorage):
    """Durable storage in ``directory`` (created if missing; :class:`RaftConfigError` if unusable).

    >>> import tempfile
    >>> directory = tempfile.mkdtemp()
    >>> storage = FileStorage(directory)
    >>> storage.append([LogEntry(1, 1, {"op": "set", "key": "a", "value": 1})])
    >>> storage.save_hard_state(HardState(term=1, vote="n1", commit=1))
    >>> storage.close()
    >>> reopened = FileStorage(directory)
    >>> state = reopened.load()
    >>> state.hard_state, [entry.index for entry in state.entries]
    (HardState(term=1, vote='n1', commit=1), [1])
    >>> reopened.close()
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._lock_fd = os.open(self.directory / "LOCK", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            raise RaftConfigError(f"Raft data directory {self.directory} is not usable: {error}") from error
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            os.close(self._lock_fd)
            raise RaftConfigError(f"Raft data directory {self.directory} is in use by another process") from error
        try:
            # Prove we can create, sync and rename files here now rather than on the first vote.
            self._write_atomically("probe", b"")
            (self.directory / "probe").unlink()
        except OSError as error:
            self.close()
            raise RaftConfigError(f"Raft data directory {self.directory} is not writable: {error}") from error
        self._log_path = self.directory / "log.bin"
        created = not self._log_path.exists()
        self._log_fd = os.open(self._log_path, os.O_RDWR | os.O_CREAT, 0o644)
        if created:
            _fsync_directory(self.directory)
        try:
            self._load()
        except StorageCorruptError:
            self.close()
            raise

    # -- loading -----------------------------------------------------------------------------------------------
    def _load(self) -> None:
        self._hard_state = self._read_hard_state()
        self._snapshot = self._read_snapshot()
        self._entries, self._positions, self._log_size = self._read_log()
        if self._snapshot is not None:
            # A crash between saving a received snapshot and rewriting the log leaves stale entries behind.
            self._compact_log(self._snapshot)
        last_index = self._entries[-1].index if self._entries else (self._snapshot.index if self._snapshot else 0)
        if self._hard_state.commit > last_index:
            # Entries are fsync'd before a commit index naming them is written, so a crash cannot cause this:
            # a committed (acknowledged) entry was lost, and this member must not vote or acknowledge again.
            raise StorageCorruptError(f"{self._log_path} ends at {last_index}, before the commit index "
                                      f"{self._hard_state.commit}")

    def _read_json(self, name: str) -> Any:
        path = self.directory / name
        if not path.exists():
            return None
        try:
            return json.loads(path.read_bytes())
        except ValueError as error:
            raise StorageCorruptError(f"{path} is not valid JSON: {error}") from error

    def _read_hard_state(self) -> HardState:
        data = self._read_json("hard_state.json")
        if data is None:
            return HardState()
        try:
            return HardState(term=int(data["term"]), vote=data["vote"], commit=self._read_commit())
        except (KeyError, TypeError, ValueError) as error:
            raise StorageCorruptError(f"hard state {data!r} is malformed") from error

    def _read_commit(self) -> int:
        try:
            commit = json.loads((self.directory / "commit.json").read_bytes())
        except (OSError, ValueError):
            return 0  # missing or torn by a crash: a lower commit index is always safe
        return commit if isinstance(commit, int) and commit >= 0 else 0

    def _read_snapshot(self) -> Snapshot | None:
        data = self._read_json("snapshot.json")
        try:
            return None if data is None else Snapshot.from_dict(data)
        except MalformedMessage as error:
            raise StorageCorruptError(f"snapshot is malformed: {error}") from error

    def _read_log(self) -> tuple[list[LogEntry], list[_RecordPosition], int]:
        data = _read_all(self._log_fd)
        entries: list[LogEntry] = []
        positions: list[_RecordPosition] = []
        offset = 0
        while offset < len(data):
            entry, end = _decode_record(data, offset)
            if entry is None:
                if end < len(data):
                    raise StorageCorruptError(f"{self._log_path}: corrupt record at byte {offset} before the tail")
                logger.warning("dropping torn tail record at byte %d of %s (crash during an append)",
                               offset, self._log_path)
                os.ftruncate(self._log_fd, offset)
                os.fsync(self._log_fd)
                break
            if entries and entry.index != entries[-1].index + 1:
                raise StorageCorruptError(f"{self._log_path}: entry {entry.index} follows {entries[-1].index}")
            entries.append(entry)
            positions.append(_RecordPosition(entry.index, entry.term, offset))
            offset = end
        return entries, positions, offset

    def load(self) -> PersistedState:
        return PersistedState(self._hard_state, self._snapshot, tuple(self._entries))

    # -- writing -----------------------------------------------------------------------------------------------
    def save_hard_state(self, hard_state: HardState) -> None:
        if (hard_state.term, hard_state.vote) != (self._hard_state.term, self._hard_state.vote):
            body = {"term": hard_state.term, "vote": hard_state.vote}
            self._write_atomically("hard_state.json", json.dumps(body).encode())
        if hard_state.commit != self._hard_state.commit:
            self._write_atomically("commit.json", str(hard_state.commit).encode(), durable=False)
        self._hard_state = hard_state

    def append(self, entries: Sequence[LogEntry]) -> None:
        if not entries:
            return
        start = entries[0].index
        if self._entries:
            next_index = self._entries[-1].index + 1
        else:
            next_index = self._snapshot.index + 1 if self._snapshot else 1
        if start > next_index:
            raise InvariantViolation(f"append at {start} leaves a gap before {next_index}")
        if start < next_index:
            self._truncate_from(start)
        records = bytearray()
        positions = []
        for entry in entries:
            body = json.dumps(entry.to_dict(), separators=(",", ":")).encode()
            positions.append(_RecordPosition(entry.index, entry.term, self._log_size + len(records)))
            records += _RECORD_HEADER.pack(len(body), zlib.crc32(body)) + body
        _write_all(self._log_fd, bytes(records), self._log_size)
        os.fsync(self._log_fd)
        # Only once the bytes are durable: a failed write leaves the in-memory view as it was.
        self._positions.extend(positions)
        self._log_size += len(records)
        self._entries.extend(entries)

    def _truncate_from(self, index: int) -> None:
        keep = next((i for i, position in enumerate(self._positions) if position.index >= index), len(self._positions))
        offset = self._positions[keep].offset if keep < len(self._positions) else self._log_size
        os.ftruncate(self._log_fd, offset)
        os.fsync(self._log_fd)
        del self._positions[keep:]
        del self._entries[keep:]
        self._log_size = offset

    def save_snapshot(self, snapshot: Snapshot) -> None:
        self._write_atomically("snapshot.json", json.dumps(snapshot.to_dict()).encode())
        self._snapshot = snapshot
        self._compact_log(snapshot)

    def _compact_log(self, snapshot: Snapshot) -> None:
        """Rewrite ``log.bin`` with only the entries after ``snapshot``. They are kept only if they continue it:
        our entry at ``snapshot.index`` has its term, or the log already starts right after it."""
        continues_snapshot = any(p.index == snapshot.index and p.term == snapshot.term for p in self._positions) or (
            bool(self._positions) and self._positions[0].index == snapshot.index + 1)
        keep = [i for i, p in enumerate(self._positions) if p.index > snapshot.index] if continues_snapshot else []
        if len(keep) == len(self._positions):
            return
        # The kept records are a contiguous suffix of the file: copy its bytes into a fresh log.
        start_offset = self._positions[keep[0]].offset if keep else self._log_size
        tail = os.pread(self._log_fd, self._log_size - start_offset, start_offset)
        if len(tail) != self._log_size - start_offset:
            raise StorageCorruptError(f"{self._log_path} is shorter than the entries it should hold")
        self._write_atomically("log.bin", tail)
        os.close(self._log_fd)
        self._log_fd = os.open(self._log_path, os.O_RDWR)
        self._positions = [_RecordPosition(p.index, p.term, p.offset - start_offset) for p in
                           (self._positions[i] for i in keep)]
        self._entries = [self._entries[i] for i in keep]
        self._log_size = len(tail)

    def _write_atomically(self, name: str, payload: bytes, durable: bool = True) -> None:
        temporary = self.directory / f".{name}.tmp"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            _write_all(fd, payload)
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, self.directory / name)
        if durable:
            _fsync_directory(self.directory)  # makes the rename itself durable

    def close(self) -> None:
        for name in ("_log_fd", "_lock_fd"):
            fd = getattr(self, name, None)
            if fd is not None:
                os.close(fd)  # closing the lock descriptor also releases the flock
                setattr(self, name, None)


def _decode_record(data: bytes, offset: int) -> tuple[LogEntry | None, int]:
    """The entry at ``offset`` and the offset after it; ``(None, end)`` for a torn or corrupt record."""
    if len(data) - offset < _RECORD_HEADER.size:
        return None, len(data)
    length, checksum = _RECORD_HEADER.unpack_from(data, offset)
    end = offset + _RECORD_HEADER.size + length
    if end > len(data):
        return None, len(data)
    body = data[offset + _RECORD_HEADER.size : end]
    if zlib.crc32(body) != checksum:
        return None, end
    try:
        return LogEntry.from_dict(json.loads(body)), end
    except (ValueError, MalformedMessage):
        return None, end


def _read_all(fd: int) -> bytes:
    size = os.fstat(fd).st_size
    return os.pread(fd, size, 0) if size else b""


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes, offset: int | None = None) -> None:
    """Write every byte (``os.write`` may write fewer, e.g. on a full disk) or raise."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view) if offset is None else os.pwrite(fd, view, offset)
        if written <= 0:
            raise OSError(f"could not write {len(view)} more bytes")
        view = view[written:]
        if offset is not None:
            offset += written
