"""A farm across namespace hosts: Redis on one, three Raft members and two inference workers on others.

Two nets (see :mod:`tests.multihost.netns`):
- ``lan``: every host, and the root namespace (the test process) at ``.1``; Redis, the
  broker, results and metrics travel on it;
- ``raft``: the three members only; their Raft peers are their addresses on it.

Cutting a member off ``raft`` partitions the Raft group while the member still reports its
status to Redis (so a test can watch an isolated leader); cutting a host off ``lan`` cuts
it from Redis.

Used by ``tests/multihost/`` and ``benchmarks/partition.py``.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.multihost.netns import Network

ROOT = Path(__file__).resolve().parents[2]
MEMBERS = ("n1", "n2", "n3")
INFERENCE = ("inf1", "inf2")
REDIS_PORT, RAFT_PORT, METRICS_PORT = 6379, 7000, 9100
SECRET = "multihost-secret-0123456789abcdef"

#: What every worker gets besides its addresses (the suite's TEST_ENV without its URLs).
WORKER_ENV = {
    "OMNIMIND_HEARTBEAT_INTERVAL": "0.5",
    "OMNIMIND_INFERENCE_TIME_LIMIT": "6",
    "OMNIMIND_TRAINING_TIME_LIMIT": "7",
    "OMNIMIND_MAX_BATCH_SIZE": "64",
    "OMNIMIND_TASK_EVENTS": "0",
}


class Process:
    def __init__(self, name: str, argv: list[str], env: dict, log: Path) -> None:
        self.name, self.log = name, log
        self._out = open(log, "ab")
        self.proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=self._out, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(10)
        self._out.close()

    def output(self) -> str:
        return self.log.read_text(errors="replace")


class Farm:
    def __init__(self, workdir: Path, retrain_interval: float = 1.0, loglevel: str = "INFO",
                 inference: tuple[str, ...] = INFERENCE) -> None:
        self.workdir = workdir
        self.inference = inference
        self.retrain_interval = retrain_interval
        self.loglevel = loglevel
        self.net = Network()
        self.members = MEMBERS  # grows with add_member_host
        self.procs: dict[str, Process] = {}
        self._clients: list = []
        try:
            self.gateway = self.net.add_net("lan", gateway=True)
            self.net.add_net("raft")
            self.net.add_host("redis", ["lan"])
            for member in MEMBERS:
                self.net.add_host(member, ["lan", "raft"])
            for name in inference:
                self.net.add_host(name, ["lan"])
        except BaseException:
            self.net.close()
            raise
        self.redis_address = self.net.hosts["redis"].address("lan")
        self.url = f"redis://{self.redis_address}:{REDIS_PORT}/0"
        self.peers = ",".join(f"{m}={self.net.hosts[m].address('raft')}:{RAFT_PORT}" for m in MEMBERS)

    # --- processes ------------------------------------------------------------------------
    def _spawn(self, name: str, argv: list[str], env: dict | None = None) -> Process:
        host = self.net.hosts[name]
        proc = Process(name, host.command(argv), {**os.environ, **(env or {})}, self.workdir / f"{name}.log")
        self.procs[name] = proc
        return proc

    def start_redis(self) -> None:
        from omnimind.embedded_redis import find_redis_server

        self._spawn("redis", [find_redis_server(), "--port", str(REDIS_PORT), "--bind", self.redis_address,
                              "--protected-mode", "no", "--save", "", "--appendonly", "no"])
        client = self.redis()
        deadline = time.monotonic() + 15
        while True:
            try:
                if client.ping():
                    return
            except Exception:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis on {self.redis_address} did not answer:\n{self.procs['redis'].output()}")
            time.sleep(0.05)

    def worker_env(self, name: str) -> dict:
        host = self.net.hosts[name]
        return {**WORKER_ENV, "OMNIMIND_BROKER_URL": self.url, "OMNIMIND_RESULT_BACKEND": self.url,
                "OMNIMIND_REDIS_URL": self.url, "OMNIMIND_METRICS_ADDRESS": host.address("lan"),
                "OMNIMIND_METRICS_PORT": str(METRICS_PORT), "OMNIMIND_DATA_DIR": str(self.workdir / name)}

    def hostname(self, name: str) -> str:
        return f"{name}@{self.net.hosts[name].address('lan')}"

    def add_member_host(self, name: str) -> str:
        """A host for one more Raft member, on both nets; returns its Raft address."""
        self.net.add_host(name, ["lan", "raft"])
        self.members = (*self.members, name)
        return self.net.hosts[name].address("raft")

    def start_worker(self, name: str, peers: str | None = None, join: bool = False) -> Process:
        """Start ``name``; a member gets ``peers`` (default: the first three) and, with ``join``, starts as a new
        member that ``omnimind raft add`` adds to the group."""
        env = self.worker_env(name)
        if name in self.members:
            queues, pool, concurrency = "training", "solo", 1
            env.update(OMNIMIND_RAFT_ID=name, OMNIMIND_RAFT_PEERS=peers or self.peers, OMNIMIND_RAFT_SECRET=SECRET,
                       OMNIMIND_RETRAIN_INTERVAL=str(self.retrain_interval), OMNIMIND_RAFT_JOIN="1" if join else "0")
        else:
            queues, pool, concurrency = "inference", "threads", 2
        argv = [sys.executable, "-m", "celery", "-A", "omnimind", "worker", "-Q", queues, "-n", self.hostname(name),
                f"--pool={pool}", f"--concurrency={concurrency}", f"--loglevel={self.loglevel}",
                "--without-mingle", "--without-gossip"]
        return self._spawn(name, argv, env)

    def start_all(self, timeout: float = 120.0) -> None:
        self.start_redis()
        for name in (*MEMBERS, *self.inference):
            self.start_worker(name)
        self.wait_registered((*MEMBERS, *self.inference), timeout)

    def wait_registered(self, names, timeout: float = 120.0) -> None:
        """Until every worker in ``names`` is in the registry, at its own address, and answers a ping."""
        from omnimind.scaling.registry import ServiceRegistry
        from omnimind.config import settings

        registry = ServiceRegistry.from_settings(settings, client=self.redis())
        app = self.celery()
        deadline = time.monotonic() + timeout
        pending = set(names)
        while pending:
            for name in list(pending):
                if not self.procs[name].alive():
                    raise AssertionError(f"{name} exited:\n{self.procs[name].output()[-3000:]}")
            nodes = {n.node_id: n for n in registry.store.snapshot()[1]}
            for name in list(pending):
                node = nodes.get(self.hostname(name))
                if node is None:
                    continue
                assert node.ip_address == self.net.hosts[name].address("lan"), (name, node.ip_address)
                try:
                    if app.control.ping(destination=[self.hostname(name)], timeout=0.5):
                        pending.discard(name)
                except Exception:
                    pass
            if pending and time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {sorted(pending)} to register and answer a ping")
            time.sleep(0.1)

    # --- clients --------------------------------------------------------------------------
    def redis(self):
        import redis

        client = redis.Redis.from_url(self.url, socket_timeout=5, socket_connect_timeout=2)
        self._clients.append(client)
        return client

    def celery(self):
        if not hasattr(self, "_celery"):
            from tests.conftest import client_app

            self._celery = client_app(self.url)
            self._celery.conf.result_backend = self.url
            self._clients.append(self._celery)
        return self._celery

    # --- what the members say -------------------------------------------------------------
    def statuses(self, client=None) -> dict:
        from omnimind.status import raft_members

        client = client or self.__dict__.setdefault("_status_client", self.redis())
        return {m: s for m, s in raft_members(client).items() if m in self.members}

    def leader(self, among=None, above_term: int = -1):
        """The status of the newest-term member that says it leads, among ``among`` (default: every member)."""
        among = self.members if among is None else among
        from omnimind.status import newest_leader

        return newest_leader(s for m, s in self.statuses().items() if m in among and s["term"] > above_term)

    def accepted(self, client=None) -> list[dict]:
        """The retrain slots the consumers accepted: slot, term, index, at (s, Redis clock)."""
        from omnimind import keys

        client = client or self.__dict__.setdefault("_status_client", self.redis())
        return [{"slot": int(f[b"slot"]), "term": int(f[b"term"]), "index": int(f[b"index"]),
                 "at": int(entry_id.split(b"-")[0]) / 1000.0}
                for entry_id, f in client.xrange(keys.schedule_accepted("retrain"))]

    # --- partitions -----------------------------------------------------------------------
    def cut(self, name: str, net: str = "raft") -> None:
        self.net.cut(name, net)

    def heal(self, name: str, net: str = "raft") -> None:
        self.net.heal(name, net)

    def close(self) -> None:
        try:
            for host in self.net.hosts.values():  # a clean shutdown deregisters through Redis
                for net in host.links:
                    self.net.heal(host.name, net)
            workers = [p for n, p in self.procs.items() if n != "redis"]
            for proc in workers:
                if proc.alive():
                    try:
                        os.killpg(proc.proc.pid, signal.SIGTERM)
                    except ProcessLookupError:
                        pass
            for proc in workers:
                proc.stop()
            if "redis" in self.procs:
                self.procs["redis"].stop()
            for client in self._clients:
                try:
                    client.close()
                except Exception:
                    pass
        finally:
            self.net.close()
