"""FileStorage: durability across restarts, torn tails, truncation, compaction and bad directories."""

import os
import random

import pytest

from omnimind.scaling.raft import (
    FileStorage,
    HardState,
    LogEntry,
    MemoryStorage,
    RaftConfigError,
    RaftNode,
    Snapshot,
    StorageCorruptError,
)


def entries(first, last, term=1):
    return [LogEntry(term, index, {"op": "set", "key": f"k{index}", "value": index})
            for index in range(first, last + 1)]


def reopen(storage: FileStorage) -> FileStorage:
    storage.close()
    return FileStorage(storage.directory)


def test_raft_file_storage_restart_keeps_term_vote_and_log(tmp_path):
    storage = FileStorage(tmp_path / "n1")
    storage.append(entries(1, 5))
    storage.save_hard_state(HardState(term=3, vote="n2", commit=4))
    state = reopen(storage).load()
    assert state.hard_state == HardState(term=3, vote="n2", commit=4)
    assert state.entries == tuple(entries(1, 5))


def test_raft_file_storage_a_lost_commit_index_is_safe_and_term_and_vote_are_not_lost(tmp_path):
    storage = FileStorage(tmp_path)
    storage.append(entries(1, 5))
    storage.save_hard_state(HardState(term=3, vote="n2", commit=2))
    storage.save_hard_state(HardState(term=3, vote="n2", commit=5))  # commit-only change: not fsync'd
    storage.close()
    (tmp_path / "commit.json").write_bytes(b"")  # the crash tore the unsynced commit file
    assert FileStorage(tmp_path).load().hard_state == HardState(term=3, vote="n2", commit=0)


def test_raft_file_storage_refuses_a_log_that_lost_committed_entries(tmp_path):
    storage = FileStorage(tmp_path)
    storage.append(entries(1, 3))
    storage.save_hard_state(HardState(term=1, vote="n1", commit=3))
    storage.close()
    with open(tmp_path / "log.bin", "r+b") as log_file:
        log_file.truncate(os.path.getsize(tmp_path / "log.bin") - 1)  # damage to the committed entry 3
    with pytest.raises(StorageCorruptError, match="before the commit index"):
        FileStorage(tmp_path)


def test_raft_file_storage_drops_a_torn_tail_record(tmp_path):
    storage = FileStorage(tmp_path)
    storage.append(entries(1, 3))
    storage.close()
    log_path = tmp_path / "log.bin"
    with open(log_path, "r+b") as log_file:  # a crash in the middle of appending entry 3
        log_file.truncate(os.path.getsize(log_path) - 5)
    storage = FileStorage(tmp_path)
    assert [entry.index for entry in storage.load().entries] == [1, 2]
    storage.append(entries(3, 4, term=2))  # appending continues cleanly after the dropped record
    assert [(e.index, e.term) for e in reopen(storage).load().entries] == [(1, 1), (2, 1), (3, 2), (4, 2)]


def test_raft_file_storage_drops_a_tail_record_with_a_bad_checksum(tmp_path):
    storage = FileStorage(tmp_path)
    storage.append(entries(1, 2))
    storage.close()
    with open(tmp_path / "log.bin", "r+b") as log_file:
        log_file.seek(-2, os.SEEK_END)
        log_file.write(b"!!")  # sectors of the last record reached disk out of order
    assert [entry.index for entry in FileStorage(tmp_path).load().entries] == [1]


def test_raft_file_storage_refuses_corruption_before_the_tail(tmp_path):
    storage = FileStorage(tmp_path)
    storage.append(entries(1, 3))
    storage.close()
    with open(tmp_path / "log.bin", "r+b") as log_file:
        log_file.seek(12)
        log_file.write(b"XX")  # inside entry 1, with valid records after it
    with pytest.raises(StorageCorruptError):
        FileStorage(tmp_path)


def test_raft_file_storage_truncates_a_conflicting_suffix(tmp_path):
    storage = FileStorage(tmp_path)
    storage.append(entries(1, 5))
    storage.append(entries(3, 3, term=2))
    assert [(e.index, e.term) for e in reopen(storage).load().entries] == [(1, 1), (2, 1), (3, 2)]


def test_raft_file_storage_snapshot_compacts_the_log(tmp_path):
    storage = FileStorage(tmp_path)
    storage.append(entries(1, 10))
    size_before = os.path.getsize(tmp_path / "log.bin")
    storage.save_snapshot(Snapshot(index=7, term=1, data={"k7": 7}))
    assert os.path.getsize(tmp_path / "log.bin") < size_before
    storage.append(entries(11, 12))
    state = reopen(storage).load()
    assert state.snapshot == Snapshot(index=7, term=1, data={"k7": 7})
    assert [entry.index for entry in state.entries] == [8, 9, 10, 11, 12]


def test_raft_file_storage_received_snapshot_replaces_a_divergent_log(tmp_path):
    storage = FileStorage(tmp_path)
    storage.append(entries(1, 4))
    storage.save_snapshot(Snapshot(index=9, term=3, data=None))  # from a leader, beyond our log
    storage.save_hard_state(HardState(term=3, vote=None, commit=9))
    state = reopen(storage).load()
    assert state.snapshot.index == 9 and state.entries == () and state.hard_state.commit == 9


def test_raft_file_storage_unusable_directory_is_a_config_error(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(RaftConfigError, match="not usable"):
        FileStorage(blocker / "data")


def test_raft_file_storage_directory_cannot_be_shared(tmp_path):
    first = FileStorage(tmp_path)
    with pytest.raises(RaftConfigError, match="in use"):
        FileStorage(tmp_path)
    first.close()


async def test_raft_node_restarts_from_file_storage(tmp_path):
    node = RaftNode("solo", ["solo"], storage=FileStorage(tmp_path))
    await node.start()
    await node.wait_for_leader(timeout=5)
    await node.propose({"op": "set", "key": "model", "value": "v7"})
    term, log = node.current_term, node.log
    await node.stop()

    restarted = RaftNode("solo", ["solo"], storage=FileStorage(tmp_path))
    assert (restarted.current_term, restarted.voted_for, restarted.log) == (term, "solo", log)
    await restarted.start()
    await restarted.wait_for(lambda: restarted.last_applied >= log[-1].index, timeout=5)
    assert restarted.state_machine.data == {"model": "v7"}
    await restarted.stop()


async def test_raft_node_compacts_its_log_and_restores_from_the_snapshot(tmp_path):
    node = RaftNode("solo", ["solo"], storage=FileStorage(tmp_path), snapshot_threshold=5)
    await node.start()
    await node.wait_for_leader(timeout=5)
    for i in range(12):
        await node.propose({"op": "set", "key": f"k{i}", "value": i})
    assert len(node.log) < 5 < node.last_applied  # compacted; only the tail since the last snapshot remains
    data = node.state_machine.data
    await node.stop()

    restarted = RaftNode("solo", ["solo"], storage=FileStorage(tmp_path), snapshot_threshold=5)
    await restarted.start()
    await restarted.wait_for(lambda: restarted.last_applied >= restarted.commit_index > 0, timeout=5)
    assert restarted.state_machine.data == data
    await restarted.stop()


@pytest.mark.parametrize("seed", range(20))
def test_raft_file_storage_matches_the_memory_model_across_reopens(tmp_path, seed):
    """Random appends (with overwrites), snapshots and hard states; after every reopen the file storage loads
    exactly what the in-memory model holds."""
    rng = random.Random(seed)
    model, storage = MemoryStorage(), FileStorage(tmp_path)
    term = 1
    for _ in range(40):
        state = model.load()
        first = (state.snapshot.index if state.snapshot else 0) + 1
        last = state.entries[-1].index if state.entries else first - 1
        roll = rng.random()
        if roll < 0.6:
            term += rng.random() < 0.3
            start = rng.randint(max(first, last - 3, state.hard_state.commit + 1), last + 1)  # never below commit
            batch = entries(start, start + rng.randint(0, 4), term=term)
            model.append(batch)
            storage.append(batch)
        elif roll < 0.75 and state.entries:
            entry = rng.choice(state.entries)
            snapshot = Snapshot(entry.index, entry.term, {"upto": entry.index})
            model.save_snapshot(snapshot)
            storage.save_snapshot(snapshot)
        elif roll < 0.8:
            snapshot = Snapshot(last + rng.randint(1, 5), term, {"received": True})  # from a leader
            model.save_snapshot(snapshot)
            storage.save_snapshot(snapshot)
        else:
            top = model.load().entries[-1].index if model.load().entries else first - 1
            hard_state = HardState(term=term, vote=rng.choice([None, "n1", "n2"]), commit=rng.randint(0, top))
            model.save_hard_state(hard_state)
            storage.save_hard_state(hard_state)
        if rng.random() < 0.3:
            storage = reopen(storage)
        assert storage.load() == model.load()
    storage.close()
