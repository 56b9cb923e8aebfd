"""Concurrent fenced publishers: versions never go backwards and the pointer is never lost."""
from __future__ import annotations

import threading

import redis
import torch

from omnimind.models.errors import StaleFence, UnknownVersion
from omnimind.fence import Fence
from omnimind.models.store import ModelStore

ROUNDS = 150


def test_two_publishers_racing_with_different_fences(redis_client, redis_server):
    stores = [ModelStore(redis.Redis.from_url(redis_server.url), "race", keep_versions=5) for _ in range(2)]
    watcher = ModelStore(redis.Redis.from_url(redis_server.url), "race")
    accepted: list[tuple[int, Fence, int]] = []  # (version, fence, publisher)
    rejected: list[tuple[int, Fence]] = []
    lock = threading.Lock()
    barrier = threading.Barrier(2)
    stop = threading.Event()
    seen: list[int] = []
    errors: list[BaseException] = []

    def publisher(who: int) -> None:
        try:
            for r in range(1, ROUNDS + 1):
                fence = Fence(r, who)  # publisher 1 always holds the newer token of a round
                state = {"w": torch.full((8,), float(r * 10 + who))}
                barrier.wait()
                try:
                    meta = stores[who].publish(state, {"samples_trained": r}, fence=fence)
                except StaleFence as exc:
                    assert tuple(exc.newest) >= tuple(fence)
                    with lock:
                        rejected.append((who, fence))
                else:
                    with lock:
                        accepted.append((meta.version, fence, who))
        except BaseException as exc:  # surface assertion errors from the thread
            errors.append(exc)
            barrier.abort()

    def watch() -> None:
        while not stop.is_set():
            version = watcher.active_version()
            if version is not None:
                seen.append(version)

    threads = [threading.Thread(target=publisher, args=(k,)) for k in range(2)]
    reader = threading.Thread(target=watch)
    reader.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    reader.join()
    assert not errors, errors

    versions = sorted(v for v, _, _ in accepted)
    assert len(versions) == len(set(versions)) == len(accepted)
    assert versions == list(range(1, len(versions) + 1))  # no gaps: rejections consume no number
    by_version = sorted(accepted)
    fences = [f for _, f, _ in by_version]
    assert fences == sorted(fences), "a version was published under an older fence than its predecessor"
    assert len(accepted) + len(rejected) == 2 * ROUNDS
    assert all(who == 0 for who, _ in rejected)  # the newer token of each round is never refused
    assert seen == sorted(seen), "the active version went backwards"

    store = stores[0]
    assert store.active_version() == versions[-1]
    assert store.fence() == Fence(ROUNDS, 1)
    meta, state = store.fetch()
    assert meta.fence == Fence(ROUNDS, 1) and torch.equal(state["w"], torch.full((8,), float(ROUNDS * 10 + 1)))
    assert [m.version for m in store.list_versions()] == versions[-5:]
    for client in {s.client for s in stores} | {watcher.client}:
        client.close()


def test_fetching_the_active_version_while_publishes_and_rollbacks_race(redis_client, redis_server):
    """Readers always get a verified, complete version; publish numbers stay fresh across rollbacks."""
    publisher = ModelStore(redis.Redis.from_url(redis_server.url), "busy", keep_versions=2)
    operator = ModelStore(redis.Redis.from_url(redis_server.url), "busy", keep_versions=2)
    reader = ModelStore(redis.Redis.from_url(redis_server.url), "busy", keep_versions=2)
    publisher.publish({"w": torch.zeros(256)}, fence=(1, 0))
    done = threading.Event()
    problems: list[BaseException] = []
    published: list[int] = []
    fetched = 0

    def publish() -> None:
        try:
            for i in range(1, 200):
                published.append(publisher.publish({"w": torch.full((256,), float(i))}, fence=(1, i)).version)
        except BaseException as exc:
            problems.append(exc)
        finally:
            done.set()

    def roll_back() -> None:
        while not done.is_set():
            retained = [m.version for m in operator.list_versions()]
            try:
                operator.rollback(retained[0], fence=operator.fence())
            except (StaleFence, UnknownVersion):  # the publisher moved on, or retired that version
                pass
            except BaseException as exc:
                problems.append(exc)
                return

    threads = [threading.Thread(target=publish), threading.Thread(target=roll_back)]
    for t in threads:
        t.start()
    while not done.is_set():
        meta, state = reader.fetch()
        assert torch.equal(state["w"], torch.full((256,), state["w"][0].item()))
        assert meta.version in {m for m in range(1, 201)}
        fetched += 1
    for t in threads:
        t.join()
    assert not problems, problems
    assert published == sorted(published) and len(set(published)) == len(published) == 199
    assert published[-1] == 200 and fetched > 0
    for store in (publisher, operator, reader):
        store.client.close()
