"""Real partitions between hosts in network namespaces (issue 13 item 1).

Redis on one host, three Raft training members and two inference workers on five others,
each bound to its own address. Links are cut by setting a veth down: a Raft minority,
then the leader (Raft links only, so it still reports to Redis), with an inference host
cut from Redis meanwhile; then everything heals. Invariants hold throughout: one leader
per term, every slot accepted once and none skipped, no predict lost, the isolated old
leader gets nothing accepted, and after the heal every host serves the newest version.
"""
from __future__ import annotations

import subprocess
import threading
import time


from tests.helpers import metric_value, wait_until
from tests.multihost.farm import INFERENCE, MEMBERS, METRICS_PORT


def test_network_fixture_builds_hosts_and_removes_them(network):
    import sys

    gateway = network.add_net("lan", gateway=True)
    a = network.add_host("a", ["lan"])
    b = network.add_host("b", ["lan"])
    assert a.address() != b.address() and gateway not in (a.address(), b.address())
    server = subprocess.Popen(b.command([sys.executable, "-m", "http.server", "8000", "--bind", b.address()]),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    probe = "import socket, sys; socket.create_connection((sys.argv[1], 8000), timeout=1).close()"

    def reaches(host, address):
        argv = [sys.executable, "-c", probe, address]
        return subprocess.run(host.command(argv) if host else argv, capture_output=True).returncode == 0

    try:
        wait_until(lambda: reaches(a, b.address()), timeout=10, message="a to reach b")
        assert reaches(None, b.address())  # the root namespace, through the bridge
        assert not reaches(a, "127.0.0.1")  # a's loopback is up and its own, b's server is not there
        network.cut("b", "lan")
        assert not reaches(a, b.address())
        network.heal("b", "lan")
        wait_until(lambda: reaches(a, b.address()), timeout=10, message="the healed link")
    finally:
        server.kill()
        server.wait(5)
    assert network.leftovers()
    network.close()
    assert network.leftovers() == []


class Watch(threading.Thread):
    """Polls the members' status keys: which members claimed leadership in each term."""

    def __init__(self, farm) -> None:
        super().__init__(daemon=True)
        self.farm, self.client = farm, farm.redis()
        self.leaders: dict[int, set[str]] = {}
        self.stop = threading.Event()
        self.errors: list[str] = []

    def run(self) -> None:
        while not self.stop.wait(0.05):
            try:
                for member, status in self.farm.statuses(self.client).items():
                    if status["state"] == "leader":
                        self.leaders.setdefault(status["term"], set()).add(member)
            except Exception as exc:  # noqa: BLE001 - reported at the end
                self.errors.append(repr(exc))


class Traffic(threading.Thread):
    """Sends a predict every 0.2 s to the shared inference queue; keeps every result handle."""

    def __init__(self, app) -> None:
        super().__init__(daemon=True)
        self.app, self.sent, self.stop = app, [], threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.2):
            self.sent.append(self.app.send_task("tasks.inference.predict", kwargs={"inputs": [0.25] * 16}))


def served_version(app, hostname: str) -> int:
    from celery.utils.nodenames import worker_direct

    return app.send_task("tasks.inference.predict", kwargs={"inputs": [0.25] * 16},
                         queue=worker_direct(hostname)).get(timeout=30)["model_version"]


def scraped_version(farm, name: str) -> float | None:
    import urllib.request

    url = f"http://{farm.net.hosts[name].address('lan')}:{METRICS_PORT}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return metric_value(response.read().decode(), "omnimind_model_version")
    except OSError:
        return None


def publish_newer(farm) -> int:
    """A new model version through the store (fenced just above whatever it holds)."""
    from omnimind import keys
    from omnimind.config import settings
    from omnimind.models.factory import build_model
    from omnimind.models.store import ModelStore

    client = farm.redis()
    store = ModelStore(client)
    newest = client.hgetall(keys.model_fence(store.name))
    fence = (int(newest[b"term"]), int(newest[b"index"]) + 1) if newest else None
    return store.publish(build_model(settings).state_dict(), {"validation_loss": 0.1}, fence=fence).version


def test_partitions_keep_one_leader_every_slot_and_every_task(farm):
    farm.start_all()
    watch, traffic = Watch(farm), Traffic(farm.celery())
    watch.start()
    traffic.start()
    try:
        first = wait_until(farm.leader, timeout=30, message="a leader")
        wait_until(lambda: len(farm.accepted()) >= 3, timeout=30, message="3 accepted slots")

        # 1. A minority: one follower loses its Raft links. The majority carries on.
        follower = next(m for m in MEMBERS if m != first["member_id"])
        farm.cut(follower)
        before = len(farm.accepted())
        wait_until(lambda: len(farm.accepted()) >= before + 3, timeout=30, message="dispatches without the minority")
        assert farm.statuses()[follower]["state"] != "leader"
        farm.heal(follower)
        now = farm.leader()
        target = now["commit_index"]
        wait_until(lambda: farm.statuses()[follower]["commit_index"] >= target, timeout=30,
                   message=f"{follower} to catch up after the heal")

        # 2. The leader loses its Raft links (it still reaches Redis); an inference host loses Redis.
        old = wait_until(farm.leader, timeout=30, message="a leader before the leader cut")
        old_id, old_term = old["member_id"], old["term"]
        others = [m for m in MEMBERS if m != old_id]
        farm.cut(old_id)
        farm.cut("inf2", "lan")
        new = wait_until(lambda: farm.leader(among=others, above_term=old_term), timeout=30,
                         message="a new leader among the majority")
        # CheckQuorum: the isolated leader steps down on its own (it reports that to Redis).
        wait_until(lambda: farm.statuses()[old_id]["state"] != "leader", timeout=10,
                   message=f"isolated {old_id} to step down")
        wait_until(lambda: sum(a["term"] > old_term for a in farm.accepted()) >= 3, timeout=30,
                   message="3 slots accepted under the new leader")
        version = publish_newer(farm)
        time.sleep(1.0)  # inf2 misses the notice while cut
        farm.heal("inf2", "lan")
        farm.heal(old_id)
        wait_until(lambda: (lambda s: s[old_id]["term"] >= new["term"] and s[old_id]["state"] == "follower"
                            and s[old_id]["commit_index"] >= new["commit_index"])(farm.statuses()),
                   timeout=30, message=f"old leader {old_id} to rejoin and catch up")

        # 3. After the heal: every host serves the newest version.
        app = farm.celery()
        for name in INFERENCE:
            wait_until(lambda: served_version(app, farm.hostname(name)) == version, timeout=30,
                       message=f"{name} to serve v{version}")
        for name in (*MEMBERS, *INFERENCE):
            wait_until(lambda: scraped_version(farm, name) == version, timeout=30,
                       message=f"{name}'s omnimind_model_version to be {version}")
        before = len(farm.accepted())
        wait_until(lambda: len(farm.accepted()) >= before + 2, timeout=30, message="dispatches after the heal")
    finally:
        traffic.stop.set()
        traffic.join(10)
        watch.stop.set()
        watch.join(10)

    # No task lost: every predict sent during the run has its result.
    assert len(traffic.sent) > 20
    for result in traffic.sent:
        assert result.get(timeout=60)["model_version"] >= 0
    # One leader per term.
    assert not watch.errors, watch.errors[:3]
    assert all(len(members) == 1 for members in watch.leaders.values()), watch.leaders
    # Every slot accepted once, none skipped.
    accepted = farm.accepted()
    slots = sorted(a["slot"] for a in accepted)
    assert slots == list(range(1, len(slots) + 1)), f"slots repeated or missed: {slots}"
    # Nothing of the isolated old leader's term is accepted once the new term's first slot is.
    first_new = next(i for i, a in enumerate(accepted) if a["term"] > old_term)
    assert all(a["term"] > old_term for a in accepted[first_new:]), accepted
    assert old_term in watch.leaders and watch.leaders[old_term] == {old_id}
